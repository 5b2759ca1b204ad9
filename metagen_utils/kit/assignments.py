"""Course assignments: the exercises at the end of each notebook, as student versions and nbgrader sources.

    python -m metagen_utils.kit.assignments                 # write the student versions into exercises/
    python -m metagen_utils.kit.assignments --check         # exit 1, listing what differs, if exercises/ is stale
    python -m metagen_utils.kit.assignments --course DIR [--exchange DIR]   # an nbgrader course folder

Each notebook ends with a summary and at least two exercises. An exercise is a code cell whose solution
sits between nbgrader's markers (``### BEGIN SOLUTION`` / ``### END SOLUTION``), followed directly by an
autograder test cell (asserts; hidden ones between ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``).
The student version is made by nbgrader's own preprocessors, used standalone: ``ClearSolutions`` puts
nbgrader's stub (``# YOUR CODE HERE`` / ``raise NotImplementedError()``) where each solution was,
``ClearHiddenTests`` drops hidden tests, ``ClearOutput`` drops every output.
"""
from __future__ import annotations

import argparse
import ast
import copy
import difflib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..errors import MetagenError
from ..files import write_atomic
from .harness import NOTEBOOKS, notebook_paths
from ..results import REPO

EXERCISES = REPO / "exercises"
GUIDE = EXERCISES / "INSTRUCTOR_GUIDE.md"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"  # nbgrader's markers
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
# A notebook's graded exercises climb this ladder, in this order; more graded or open ones may follow.
LADDER = ("warm-up", "write the algorithm", "harder")
GRADED = re.compile(r"\*\*Exercise (\d+) · ([a-z -]+) \(graded\)\.\*\*")
OPEN = re.compile(r"\*\*Exercise (\d+) · open\.\*\*")
HAND_IN = "*Hand in:*"


class AssignmentError(MetagenError, ValueError):
    """A notebook's exercises are not in the shape the course tools need, or exercises/ is stale."""


# --- what an exercise is --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook: the indices (in ``nb.cells``) of its solution and test cells."""

    number: int
    solution: int
    test: int | None  # None: no code cell follows the solution cell


def _python(source: str) -> str:
    """The cell as Python: IPython magics and shell escapes turned into ``get_ipython()`` calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _parse(source: str) -> ast.Module | None:
    """The cell's syntax tree (magics turned into calls first); None if it does not parse."""
    try:
        return ast.parse(_python(source))
    except SyntaxError:
        return None


def is_solution_cell(cell) -> bool:
    return cell.cell_type == "code" and BEGIN_SOLUTION in cell.source


def has_asserts(cell) -> bool:
    """Whether a code cell checks something: an ``assert`` statement or a call to ``assert…``
    (``np.testing.assert_allclose``, ``torch.testing.assert_close``)."""
    tree = _parse(cell.source)
    if tree is None:
        return "assert" in cell.source
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name.startswith("assert"):
                return True
    return False


def exercises(nb) -> list[Exercise]:
    """The notebook's exercises in order: each solution cell and the code cell right after it."""
    found = []
    for index, cell in enumerate(nb.cells):
        if not is_solution_cell(cell):
            continue
        test = next((j for j in range(index + 1, len(nb.cells)) if nb.cells[j].cell_type == "code"), None)
        found.append(Exercise(len(found) + 1, index, test))
    return found


def _heading_index(nb, heading: str) -> int | None:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and any(line.strip().lower() == heading.lower()
                                                 for line in cell.source.splitlines()):
            return index
    return None


def exercise_problems(path: Path, minimum: int = 2) -> list[str]:
    """What keeps a notebook from being a course assignment (empty when nothing does): a summary and
    then at least ``minimum`` exercises, each solution followed by a test cell with asserts."""
    nb = nbformat.read(str(path), as_version=4)
    found = exercises(nb)
    problems = []
    summary, section = _heading_index(nb, "## Summary"), _heading_index(nb, "## Exercises")
    if summary is None:
        problems.append(f"{path.name}: no '## Summary' section")
    if section is None:
        problems.append(f"{path.name}: no '## Exercises' section")
    elif summary is not None and summary > section:
        problems.append(f"{path.name}: the summary comes after the exercises")
    if len(found) < minimum:
        problems.append(f"{path.name}: {len(found)} exercise(s) with a solution between '{BEGIN_SOLUTION}' and "
                        f"'{END_SOLUTION}'; at least {minimum} are needed")
    for ex in found:
        if section is not None and ex.solution < section:
            problems.append(f"{path.name}: exercise {ex.number} (cell {ex.solution}) is above '## Exercises'")
        solution = nb.cells[ex.solution].source
        if solution.count(BEGIN_SOLUTION) != solution.count(END_SOLUTION):
            problems.append(f"{path.name}: cell {ex.solution} has unmatched solution markers")
        if ex.test is None:
            problems.append(f"{path.name}: exercise {ex.number} (cell {ex.solution}) has no test cell after it")
        elif is_solution_cell(nb.cells[ex.test]) or not has_asserts(nb.cells[ex.test]):
            problems.append(f"{path.name}: cell {ex.test}, after exercise {ex.number}'s solution (cell "
                            f"{ex.solution}), is not an autograder test cell (no assert in it)")
    return problems


def ladder_problems(path: Path) -> list[str]:
    """What keeps a notebook's exercises from being a graded ladder (empty when nothing does): at least
    three graded exercises labelled, in order, as :data:`LADDER` (``**Exercise N · warm-up (graded).**``
    in the markdown above the solution), hidden tests in every graded exercise's test cell, and a
    ``*Hand in:*`` deliverable in every open exercise (``**Exercise N · open.**``)."""
    nb = nbformat.read(str(path), as_version=4)
    found, problems = exercises(nb), []
    labels = []
    for ex in found:
        above = next((c.source for c in reversed(nb.cells[:ex.solution]) if c.cell_type == "markdown"), "")
        match = GRADED.search(above)
        labels.append(match.group(2) if match else None)
        if match is None:
            problems.append(f"{path.name}: exercise {ex.number} (cell {ex.solution}) has no "
                            "'**Exercise N · <level> (graded).**' label in the markdown above it")
        if ex.test is not None and BEGIN_HIDDEN not in nb.cells[ex.test].source:
            problems.append(f"{path.name}: exercise {ex.number}'s test cell {ex.test} has no hidden tests "
                            f"('{BEGIN_HIDDEN}'), so a student could fit the visible ones")
    if tuple(labels[:len(LADDER)]) != LADDER:
        problems.append(f"{path.name}: the graded exercises are labelled {labels}; the first three must be "
                        f"{list(LADDER)}, in that order")
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for part in OPEN.split(cell.source)[2::2]:     # the text of each open exercise in the cell
            if HAND_IN not in part.split("**Exercise")[0]:
                problems.append(f"{path.name}: an open exercise in cell {index} says nothing to hand in "
                                f"('{HAND_IN}')")
    return problems


def guide_problems(path: Path, guide: Path = GUIDE) -> list[str]:
    """What the instructor guide lacks for a notebook's exercises (empty when nothing): a section
    ``### NN · Exercise N (<level>, graded)`` or ``(open)`` for each, and a rubric for each open one."""
    nb = nbformat.read(str(path), as_version=4)
    text = guide.read_text() if guide.is_file() else ""
    sections = dict(re.findall(r"^### (\d\d · Exercise \d+ \([^)]*\))\n(.*?)(?=^##|\Z)", text, re.M | re.S))
    problems = []
    prefix = path.name[:2]
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for number, level in GRADED.findall(cell.source):
            if f"{prefix} · Exercise {number} ({level}, graded)" not in sections:
                problems.append(f"{guide.name}: no section '### {prefix} · Exercise {number} ({level}, graded)'")
        for number in OPEN.findall(cell.source):
            body = sections.get(f"{prefix} · Exercise {number} (open)")
            if body is None or "Rubric:" not in body:
                problems.append(f"{guide.name}: no section '### {prefix} · Exercise {number} (open)' with a "
                                "'Rubric:'")
    return problems


# --- student versions -------------------------------------------------------------------------------------


def student_version(nb) -> nbformat.NotebookNode:
    """The notebook as students get it, made by nbgrader's preprocessors (standalone, without the
    nbgrader cell metadata, hence ``enforce_metadata=False``): solutions replaced by nbgrader's stub,
    hidden tests removed, all outputs and execution counts cleared."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions

    nb = copy.deepcopy(nb)
    resources: dict = {}
    for preprocessor in (ClearSolutions(enforce_metadata=False), ClearHiddenTests(enforce_metadata=False),
                         ClearOutput()):
        nb, resources = preprocessor.preprocess(nb, resources)
    return nb


def _student_text(path: Path) -> str:
    try:
        nb = student_version(nbformat.read(str(path), as_version=4))
    except RuntimeError as e:  # nbgrader's message for a nested or unclosed solution region
        raise AssignmentError(f"{path.name}: {e}") from None
    return nbformat.writes(nb) + "\n"


def make_student_versions(src_dir: str | Path = NOTEBOOKS, out_dir: str | Path = EXERCISES) -> list[Path]:
    """Write the student version of every notebook of ``src_dir`` into ``out_dir`` (atomically), and
    remove student notebooks whose source is gone. Returns the paths written."""
    out_dir = Path(out_dir)
    sources = notebook_paths(Path(src_dir))
    texts = {path.name: _student_text(path) for path in sources}  # all converted before any is written
    written = []
    for name, text in texts.items():
        target = out_dir / name
        write_atomic(target, lambda tmp, text=text: tmp.write_text(text))
        written.append(target)
    for stale in out_dir.glob("[0-9][0-9]_*.ipynb"):
        if stale.name not in texts:
            stale.unlink()
    return written


def _cell_summary(cell) -> str:
    first = cell.get("source", "").strip().splitlines()
    return f"{cell.get('cell_type')} cell starting {first[0] if first else ''!r}"


def check_in_sync(src_dir: str | Path = NOTEBOOKS, out_dir: str | Path = EXERCISES) -> list[str]:
    """The differences between ``out_dir`` and what :func:`make_student_versions` would write there
    (empty when they agree): missing or extra notebooks, and per notebook the first cells that differ."""
    out_dir = Path(out_dir)
    sources = notebook_paths(Path(src_dir))
    differences = []
    for path in sources:
        target = out_dir / path.name
        if not target.is_file():
            differences.append(f"{target} is missing")
            continue
        expected, actual = _student_text(path), target.read_text()
        if expected == actual:
            continue
        exp_nb, act_nb = nbformat.reads(expected, as_version=4), nbformat.reads(actual, as_version=4)
        cells = []
        for index in range(max(len(exp_nb.cells), len(act_nb.cells))):
            exp = exp_nb.cells[index] if index < len(exp_nb.cells) else None
            act = act_nb.cells[index] if index < len(act_nb.cells) else None
            if exp is None or act is None:
                cells.append(f"cell {index} is only in the {'committed' if exp is None else 'regenerated'} version")
            elif (exp.cell_type, exp.source) != (act.cell_type, act.source):
                diff = difflib.unified_diff(act.source.splitlines(), exp.source.splitlines(), "committed",
                                            "regenerated", lineterm="", n=0)
                cells.append(f"cell {index} ({_cell_summary(exp)}) differs:\n    " + "\n    ".join(list(diff)[2:8]))
            elif act.get("outputs") or act.get("execution_count"):
                cells.append(f"cell {index} ({_cell_summary(act)}) has outputs; student versions have none")
            elif json.dumps(exp, sort_keys=True) != json.dumps(act, sort_keys=True):
                cells.append(f"cell {index} ({_cell_summary(exp)}) differs in its metadata")
        if not cells and json.dumps(exp_nb.metadata, sort_keys=True) != json.dumps(act_nb.metadata, sort_keys=True):
            cells.append("the notebook metadata differs")
        differences.append(f"{target} differs from its source {path}: " +
                           ("; ".join(cells[:5]) if cells else "formatting only") +
                           (f" (and {len(cells) - 5} more cells)" if len(cells) > 5 else ""))
    names = {path.name for path in sources}
    for extra in sorted(out_dir.glob("[0-9][0-9]_*.ipynb")):
        if extra.name not in names:
            differences.append(f"{extra} has no source notebook in {src_dir}")
    return differences


NBGRADER_CONFIG = '''\
# nbgrader configuration of the metagen course (written by python -m metagen_utils.kit.assignments --course).
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.root = {root!r}
c.Exchange.root = {exchange!r}
c.ExecutePreprocessor.timeout = 1800          # seconds per cell: notebooks train models on 2 cores
c.ExecutePreprocessor.kernel_name = "python3"  # the kernel of the environment nbgrader runs in
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
'''


def nbgrader_source(nb, assignment: str) -> nbformat.NotebookNode:
    """The notebook with nbgrader's cell metadata: each solution cell an "Autograded answer" cell, each
    test cell a locked "Autograder tests" cell worth one point; outputs cleared."""
    from nbgrader.preprocessors import ClearOutput

    nb = copy.deepcopy(nb)
    for ex in exercises(nb):
        nb.cells[ex.solution].metadata["nbgrader"] = {
            "grade": False, "grade_id": f"{assignment}-ex{ex.number}", "locked": False,
            "schema_version": 3, "solution": True, "task": False}
        if ex.test is not None:
            nb.cells[ex.test].metadata["nbgrader"] = {
                "grade": True, "grade_id": f"{assignment}-ex{ex.number}-tests", "locked": True, "points": 1,
                "schema_version": 3, "solution": False, "task": False}
    return ClearOutput().preprocess(nb, {})[0]


def make_course(course_dir: str | Path, src_dir: str | Path = NOTEBOOKS, course_id: str = "metagen",
                exchange: str | Path | None = None) -> list[str]:
    """Write an nbgrader course folder: ``nbgrader_config.py`` and ``source/<NN_name>/<NN_name>.ipynb``,
    one assignment per notebook that has exercises. Returns the assignment names."""
    course_dir = Path(course_dir).resolve()
    exchange = Path(exchange).resolve() if exchange else course_dir / "exchange"
    assignments = []
    for path in notebook_paths(Path(src_dir)):
        nb = nbformat.read(str(path), as_version=4)
        if not exercises(nb):
            continue
        source = nbgrader_source(nb, path.stem)
        write_atomic(course_dir / "source" / path.stem / path.name,
                     lambda tmp, nb=source: nbformat.write(nb, str(tmp)))
        assignments.append(path.stem)
    if not assignments:
        raise AssignmentError(f"no notebook in {src_dir} has an exercise ({BEGIN_SOLUTION} … {END_SOLUTION})")
    text = NBGRADER_CONFIG.format(course_id=course_id, root=str(course_dir), exchange=str(exchange))
    write_atomic(course_dir / "nbgrader_config.py", lambda tmp: tmp.write_text(text))
    exchange.mkdir(parents=True, exist_ok=True)
    return assignments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metagen_utils.kit.assignments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that exercises/ is up to date")
    parser.add_argument("--course", metavar="DIR", help="write an nbgrader course folder into DIR")
    parser.add_argument("--exchange", metavar="DIR", help="with --course: nbgrader's exchange folder, shared "
                        "with the students (default: DIR/exchange)")
    parser.add_argument("--src", default=str(NOTEBOOKS), help="notebooks with solutions (default: notebooks/)")
    parser.add_argument("--out", default=str(EXERCISES), help="student versions (default: exercises/)")
    args = parser.parse_args(argv)
    try:
        if args.course:
            names = make_course(args.course, args.src, exchange=args.exchange)
            print(f"nbgrader course in {args.course}: assignments {', '.join(names)}")
        elif args.check:
            differences = check_in_sync(args.src, args.out)
            if differences:
                print("exercises are out of date (run `python -m metagen_utils.kit.assignments`):\n- " +
                      "\n- ".join(differences), file=sys.stderr)
                return 1
            print(f"{args.out} is in sync with {args.src}")
        else:
            written = make_student_versions(args.src, args.out)
            print(f"wrote {len(written)} student notebook(s) into {args.out}")
    except MetagenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
