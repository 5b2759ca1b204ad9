"""Course assignments: exercises/ made by nbgrader's ClearSolutions, students stopped by its stub, wrong
answers rejected, solutions passing every autograder cell, and the nbgrader course flow itself.

The machinery is tested on a small notebook built here with two exercises (one with hidden tests);
the committed notebooks are checked for their shape (a summary, a ladder of at least three graded
exercises with hidden tests, open exercises with a deliverable), for their committed outputs (every
autograder cell ran without error), and for their student versions.

How the ladder is checked quickly: running a notebook up to its exercises costs as long as the notebook
itself (minutes for the training notebooks), so only the cells the exercises depend on are run — the
parameters and setup cells and, found by static analysis (which names each cell binds and reads), the
earlier cells that bind what the exercises read. Then, in the same kernel, each exercise runs with the
student's stub (it must stop with NotImplementedError), with each wrong answer of
tests/exercise_answers.py (each must fail the test cell, hidden tests included) and with the solution
(it must pass: so nothing the exercises need is missing from the slice). If a solution fails, it all
runs again on every cell before the exercises. The solution notebooks as a whole are re-executed by the
nbval run of the test suite.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from exercise_answers import WRONG_ANSWERS
from exercise_runner import exercise_cells, names_defined, names_used, run_ladder
from metagen_utils.kit.assignments import (BEGIN_SOLUTION, EXERCISES, AssignmentError, check_in_sync, exercise_problems, exercises,
                                       guide_problems, ladder_problems, make_course, make_student_versions, student_version)
from metagen_utils.kit.harness import NOTEBOOKS, notebook_paths

STUB = "# YOUR CODE HERE\nraise NotImplementedError()"  # nbgrader's ClearSolutions.code_stub["python"]


def fixture_cells():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    return [
        md("# 01 · A fixture\n\nTwo exercises, to test the course machinery."),
        md("## Parameters"),
        code("SEED = 0", metadata={"tags": ["parameters"]}),
        code("import math\nBASE = 10\nprint('setup done')"),
        code("values = [1, 2, 3]"),
        code("unrelated = math.factorial(5)  # stands for minutes of training the exercises do not need"),
        md("## Summary\n- values sum to six."),
        md("## Exercises\n**Exercise 1.** Write `total(xs)`."),
        code("def total(xs):\n    \"\"\"The sum of xs.\"\"\"\n    ### BEGIN SOLUTION\n    return sum(xs)\n"
             "    ### END SOLUTION"),
        code("assert total(values) == 6\nprint('exercise 1 passed')"),
        md("**Exercise 2.** Scale `values` by `BASE` into `scaled`."),
        code("### BEGIN SOLUTION\nscaled = [BASE * v for v in values]\n### END SOLUTION"),
        code("assert scaled[0] == 10\n### BEGIN HIDDEN TESTS\nassert scaled == [10, 20, 30]\n"
             "### END HIDDEN TESTS\nprint('exercise 2 passed')"),
    ]


def write_fixture(folder: Path, name: str = "01_fixture", execute: bool = False) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = fixture_cells()
    if execute:
        from nbclient import NotebookClient

        NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return path


# --- the machinery, on the fixture ---------------------------------------------------------------------


def test_student_version_puts_nbgraders_stub_where_solutions_were_and_keeps_the_tests(tmp_path):
    source = nbformat.read(str(write_fixture(tmp_path)), as_version=4)
    student = student_version(source)
    assert [c.cell_type for c in student.cells] == [c.cell_type for c in source.cells]
    sol1, test1, sol2, test2 = (student.cells[i] for i in (8, 9, 11, 12))
    assert sol1.source == 'def total(xs):\n    """The sum of xs."""\n    ' + STUB.replace("\n", "\n    ")
    assert sol2.source == STUB
    assert "sum(xs)" not in sol1.source and "BASE * v" not in sol2.source
    assert test1.source == source.cells[9].source, "visible tests are kept as they are"
    assert "assert scaled[0] == 10" in test2.source and "[10, 20, 30]" not in test2.source, "hidden tests go"
    text = nbformat.writes(student)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    unchanged = [i for i in range(len(source.cells)) if i not in (8, 11, 12)]
    assert [student.cells[i].source for i in unchanged] == [source.cells[i].source for i in unchanged]


def test_student_version_has_no_outputs_or_execution_counts(tmp_path):
    source = nbformat.read(str(write_fixture(tmp_path, execute=True)), as_version=4)
    assert any(c.get("outputs") for c in source.cells)
    student = student_version(source)
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in student.cells if c.cell_type == "code")


def test_names_used_are_the_inputs_a_cell_reads_before_binding_them():
    assert names_used("small = f(x)\nassert small.shape == s") == {"f", "x", "s"}
    assert names_used("def g(a):\n    b = a + c\n    return [b for _ in d]\ny = g(1) + z") == {"c", "d", "z"}
    assert names_used("x = x + 1") == {"x"}
    assert names_used("for k, (a, b) in pairs:\n    for j in k:\n        t = a + j\nprint(t, b)") == {"pairs", "print"}
    assert names_used("for x in f(x):\n    pass") == {"f", "x"}, "the loop's iterable is read before x is bound"
    assert names_defined("import numpy as np\nfrom a.b import c\nfig.x = 1\nfor i in r: pass") == \
        {"np", "c", "fig", "i"}
    assert names_defined("%time y = w") is None, "code inside a magic is not analysed: such a cell is kept"


def test_exercise_slice_runs_setup_and_what_the_exercises_read_and_nothing_else(tmp_path):
    nb = nbformat.read(str(write_fixture(tmp_path)), as_version=4)
    assert exercises(nb)[0].solution == 8 and exercises(nb)[0].test == 9
    assert exercise_cells(nb) == ([2, 3, 4], [8, 9, 11, 12]), "the training-like cell 5 is not needed"
    assert exercise_cells(nb, full=True) == ([2, 3, 4, 5], [8, 9, 11, 12])


@pytest.mark.slow
def test_fixture_ladder_stub_stops_wrong_answers_fail_and_solutions_pass(tmp_path):
    source = nbformat.read(str(write_fixture(tmp_path)), as_version=4)
    wrong = {1: {"zero": "def total(xs):\n    return 0"}, 2: {"visible test only": "scaled = [10]"}}
    ladder = run_ladder(student_version(source), source, wrong, tmp_path)
    assert ladder.setup_error is None
    assert ladder.answers[1]["solution"] is None and ladder.answers[2]["solution"] is None
    assert ladder.answers[1]["student"][0] == ladder.answers[2]["student"][0] == "NotImplementedError"
    assert ladder.answers[1]["zero"][0] == "AssertionError"
    assert ladder.answers[2]["visible test only"][0] == "AssertionError", "the hidden test rejects it"

    from nbclient import NotebookClient  # the whole solution notebook passes every autograder cell

    NotebookClient(source, kernel_name="python3", timeout=120).execute()
    assert [c.outputs[-1]["text"] for c in (source.cells[9], source.cells[12])] == \
        ["exercise 1 passed\n", "exercise 2 passed\n"]


def test_make_student_versions_then_check_in_sync_reports_what_is_stale(tmp_path):
    src, out = tmp_path / "notebooks", tmp_path / "exercises"
    path = write_fixture(src)
    written = make_student_versions(src, out)
    assert written == [out / "01_fixture.ipynb"]
    assert check_in_sync(src, out) == []
    assert not list(out.glob(".*.tmp")), "written atomically, nothing left behind"

    nb = nbformat.read(str(path), as_version=4)
    nb.cells[9].source += "\nassert total([]) == 0"
    nbformat.write(nb, str(path))
    (differences,) = check_in_sync(src, out)
    assert "01_fixture.ipynb differs" in differences and "cell 9" in differences and "total([])" in differences

    make_student_versions(src, out)
    student = nbformat.read(str(out / "01_fixture.ipynb"), as_version=4)
    student.cells[9].outputs = [nbformat.v4.new_output("stream", text="ran\n")]
    nbformat.write(student, str(out / "01_fixture.ipynb"))
    (differences,) = check_in_sync(src, out)
    assert "cell 9" in differences and "has outputs" in differences

    (out / "02_gone.ipynb").write_text((out / "01_fixture.ipynb").read_text())
    (out / "01_fixture.ipynb").unlink()
    assert sorted(check_in_sync(src, out)) == [f"{out / '01_fixture.ipynb'} is missing",
                                               f"{out / '02_gone.ipynb'} has no source notebook in {src}"]
    make_student_versions(src, out)
    assert check_in_sync(src, out) == [] and not (out / "02_gone.ipynb").exists()


@pytest.mark.slow
def test_the_check_command_exits_1_and_names_the_stale_notebook(tmp_path):
    src, out = tmp_path / "notebooks", tmp_path / "exercises"
    write_fixture(src)
    command = [sys.executable, "-m", "metagen_utils.kit.assignments", "--src", str(src), "--out", str(out)]
    stale = subprocess.run(command + ["--check"], capture_output=True, text=True)
    assert stale.returncode == 1 and "01_fixture.ipynb is missing" in stale.stderr
    make_student_versions(src, out)  # what the command without --check does
    fresh = subprocess.run(command + ["--check"], capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr


def test_an_unclosed_solution_region_is_refused_naming_the_notebook(tmp_path):
    path = write_fixture(tmp_path / "notebooks")
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[11].source = "### BEGIN SOLUTION\nscaled = []"
    nbformat.write(nb, str(path))
    with pytest.raises(AssignmentError, match=r"01_fixture\.ipynb: no end solution statement found"):
        make_student_versions(tmp_path / "notebooks", tmp_path / "exercises")
    assert not (tmp_path / "exercises" / "01_fixture.ipynb").exists()
    assert any("cell 11 has unmatched solution markers" in p for p in exercise_problems(path))


def test_exercise_problems_name_a_missing_test_cell_and_too_few_exercises(tmp_path):
    path = write_fixture(tmp_path)
    assert exercise_problems(path) == []
    nb = nbformat.read(str(path), as_version=4)
    del nb.cells[12], nb.cells[11], nb.cells[10]       # exercise 2 gone
    nb.cells[9] = nbformat.v4.new_code_cell("print(total(values))")  # a test cell that tests nothing
    nbformat.write(nb, str(path))
    problems = exercise_problems(path)
    assert "01_fixture.ipynb: 1 exercise(s) with a solution between '### BEGIN SOLUTION' and '### END SOLUTION'; " \
           "at least 2 are needed" in problems
    assert any("cell 9, after exercise 1's solution (cell 8), is not an autograder test cell" in p
               for p in problems)


@pytest.mark.slow
def test_nbgrader_generates_the_assignment_and_autogrades_solution_full_marks_and_stub_zero(tmp_path):
    """The README's instructor flow on the fixture: generate_assignment, a submission each from a
    student who solved it and one who handed in the stub, autograde, grades from the gradebook."""
    src = tmp_path / "notebooks"
    write_fixture(src)
    course = tmp_path / "course"
    assert make_course(course, src) == ["01_fixture"]
    nbgrader = [sys.executable, "-m", "nbgrader"]
    # nbgrader calls `alembic` by name: the environment's bin/ must be on PATH (an activated .venv)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

    def run(*args):
        proc = subprocess.run(nbgrader + list(args), cwd=course, capture_output=True, text=True, timeout=300,
                              env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    run("generate_assignment", "01_fixture", "--force")
    released = course / "release" / "01_fixture" / "01_fixture.ipynb"
    student = nbformat.read(str(released), as_version=4)
    assert student.cells[11].source == STUB
    solved = nbformat.read(str(course / "source" / "01_fixture" / "01_fixture.ipynb"), as_version=4)
    for who, nb in (("alice", solved), ("bob", student)):  # what `nbgrader collect` puts in submitted/
        folder = course / "submitted" / who / "01_fixture"
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / "01_fixture.ipynb"))
    run("autograde", "01_fixture", "--force")
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {who: gradebook.find_submission("01_fixture", who).score for who in ("alice", "bob")}
        assert gradebook.find_assignment("01_fixture").max_score == 2
    assert scores == {"alice": 2, "bob": 0}


# --- the committed notebooks ---------------------------------------------------------------------------

SERIES = notebook_paths(NOTEBOOKS)


def test_every_notebook_ends_with_a_summary_and_a_ladder_of_at_least_three_graded_exercises():
    problems = [p for path in SERIES for p in exercise_problems(path, minimum=3) + ladder_problems(path)]
    assert not problems, "\n".join(problems)


def test_ladder_problems_name_a_missing_label_hidden_test_and_deliverable(tmp_path):
    path = write_fixture(tmp_path)
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[7].source = "## Exercises\n**Exercise 1 · warm-up (graded).** Write `total(xs)`."
    nb.cells[10].source = "**Exercise 2 · harder (graded).** Scale.\n\n**Exercise 3 · open.** Think."
    nbformat.write(nb, str(path))
    problems = "\n".join(ladder_problems(path))
    assert "exercise 1's test cell 9 has no hidden tests" in problems
    assert "labelled ['warm-up', 'harder']; the first three must be" in problems
    assert "open exercise in cell 10 says nothing to hand in" in problems


def test_the_instructor_guide_covers_every_exercise_with_a_rubric_for_the_open_ones(tmp_path):
    problems = [p for path in SERIES for p in guide_problems(path)]
    assert not problems, "\n".join(problems)
    path = write_fixture(tmp_path)
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[7].source = "## Exercises\n**Exercise 1 · warm-up (graded).** Write `total(xs)`."
    nb.cells[10].source = "**Exercise 2 · open.** Think. *Hand in:* a number."
    nbformat.write(nb, str(path))
    guide = tmp_path / "guide.md"
    guide.write_text("### 01 · Exercise 1 (warm-up, graded)\nChecks.\n\n### 01 · Exercise 2 (open)\nA number.\n")
    assert guide_problems(path, guide) == ["guide.md: no section '### 01 · Exercise 2 (open)' with a 'Rubric:'"]


def test_every_graded_exercise_has_a_constant_and_a_likely_wrong_answer_to_reject():
    for path in SERIES:
        graded = [ex.number for ex in exercises(nbformat.read(str(path), as_version=4))]
        wrong = WRONG_ANSWERS.get(path.stem, {})
        assert sorted(wrong) == graded, f"{path.stem}: wrong answers for {sorted(wrong)}; exercises {graded}"
        for number, answers in wrong.items():
            assert len(answers) >= 2, f"{path.stem} exercise {number}: a constant and a likely mistake"


def test_student_versions_have_no_hidden_tests_or_solutions():
    for path in sorted(EXERCISES.glob("[0-9][0-9]_*.ipynb")):
        text = path.read_text()
        assert "HIDDEN TESTS" not in text and BEGIN_SOLUTION not in text, path.name


def test_exercises_folder_is_in_sync_with_the_notebooks():
    differences = check_in_sync(NOTEBOOKS, EXERCISES)
    assert not differences, ("exercises/ is out of date; run `python -m metagen_utils.kit.assignments`:\n- " +
                             "\n- ".join(differences))


@pytest.mark.parametrize("path", SERIES, ids=[p.stem for p in SERIES])
def test_solution_notebook_passed_every_autograder_cell_in_its_committed_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    for ex in exercises(nb):
        for role, index in (("solution", ex.solution), ("autograder test", ex.test)):
            if index is None:
                continue
            cell = nb.cells[index]
            assert cell.get("execution_count") is not None, \
                f"{path.name}: exercise {ex.number}'s {role} cell {index} has not been executed (make notebooks)"
            errors = [f"{o.ename}: {o.evalue}" for o in cell.get("outputs", []) if o.output_type == "error"]
            assert not errors, f"{path.name}: exercise {ex.number}'s {role} cell {index} failed: {errors}"


@pytest.mark.slow
@pytest.mark.parametrize("path", SERIES, ids=[p.stem for p in SERIES])
def test_ladder_student_stubs_stop_wrong_answers_fail_and_solutions_pass(path):
    """Every graded exercise, in one kernel: the student version stops at nbgrader's stub, every wrong
    answer of tests/exercise_answers.py fails the test cell (hidden tests included), the solution passes."""
    source = nbformat.read(str(path), as_version=4)
    committed = EXERCISES / path.name
    assert committed.is_file(), f"{committed} is missing; run `python -m metagen_utils.kit.assignments`"
    ladder = run_ladder(nbformat.read(str(committed), as_version=4), source, WRONG_ANSWERS[path.stem],
                        NOTEBOOKS)
    assert ladder.setup_error is None, f"{path.name}: a cell before the exercises failed: {ladder.setup_error}"
    for number, answers in ladder.answers.items():
        assert answers["solution"] is None, f"{path.name} exercise {number}: the solution fails: {answers}"
        assert answers["student"] and answers["student"][0] == "NotImplementedError", \
            f"{path.name} exercise {number}: the student version should stop at the stub: {answers['student']}"
        passed = [name for name, error in answers.items() if name not in ("student", "solution") and not error]
        assert not passed, f"{path.name} exercise {number}: wrong answers pass its tests: {passed}"


def test_make_course_refuses_notebooks_without_exercises(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 01 · Nothing to do")]
    (tmp_path / "nbs").mkdir()
    nbformat.write(nb, str(tmp_path / "nbs" / "01_plain.ipynb"))
    with pytest.raises(AssignmentError, match="no notebook in .* has an exercise"):
        make_course(tmp_path / "course", tmp_path / "nbs")
