"""Running a notebook's first exercise without the rest of the notebook (a test helper, not the kit's).

``first_exercise_cells`` is a backward slice over the notebook's code cells: the set-up cells, and the
cells whose names the first exercise reads, transitively, so that a test can check that a student version
stops at its first exercise without minutes of training before it. ``run_first_exercise`` runs that slice
once, with the student's and the solution's exercise cells, in one fresh kernel.
"""
from __future__ import annotations

import ast
import copy
import os
import symtable
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch


from metagen_utils.kit.assignments import AssignmentError, _parse, _python, exercises
from metagen_utils.kit.harness import KERNEL

def _scoped_walk(tree: ast.AST):
    """Nodes at module scope: not inside function, lambda, class bodies or comprehensions."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
                                  ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                yield child  # the definition itself binds a name; its body is another scope
                continue
            stack.append(child)


def names_defined(source: str) -> set[str] | None:
    """Names a cell binds or changes at module scope (assignments, imports, definitions, and
    ``x.attr = …`` / ``x[i] = …`` on a name); None if it cannot be analysed (a star import, a magic
    such as ``%time x = f()`` whose code is a string, a syntax error), which makes the caller keep it."""
    tree = _parse(source)
    if tree is None or "get_ipython()" in _python(source):
        return None
    names = set()
    for node in _scoped_walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)):
            base = node.value
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                base = base.value
            if isinstance(base, ast.Name):
                names.add(base.id)
    for node in ast.walk(tree):  # `global x` inside a function that assigns x
        if isinstance(node, ast.Global):
            names.update(node.names)
    return names


def _global_reads(source: str) -> set[str]:
    """Module-scope names a piece of code reads: at top level, or from inside its functions, lambdas,
    classes and comprehensions (their own parameters and locals are not reads of the notebook's state)."""
    reads = set()

    def visit(table, top: bool) -> None:
        for symbol in table.get_symbols():
            if symbol.is_referenced() and (top or symbol.is_global()):
                reads.add(symbol.get_name())
        for child in table.get_children():
            visit(child, False)

    visit(symtable.symtable(source, "<cell>", "exec"), True)
    return reads


def names_used(*sources: str) -> set[str]:
    """The names cells read before binding them (run in this order): their inputs from earlier cells.

    Reads in any scope count (function bodies read globals when called); a name bound by an earlier
    statement of these cells, as ``small`` in ``small = f(x); assert small.shape == …``, does not.
    """
    free: set[str] = set()
    bound: set[str] = set()
    for source in sources:
        tree = _parse(source)
        if tree is None:
            continue
        for statement in tree.body:
            free |= _global_reads(ast.unparse(statement)) - bound
            bound |= names_defined(ast.unparse(statement)) or set()
    return free


def first_exercise_cells(nb, full: bool = False) -> list[int]:
    """The code cells to run to reach the end of the notebook's first exercise (its test cell).

    ``full=True``: every code cell up to there. Otherwise a backward slice, so that minutes of training
    in unrelated sections are skipped: the ``parameters`` cell and the setup cell after it, every earlier
    cell that binds a name the exercise reads (and, in turn, those cells' own inputs), then the
    exercise's solution and test cells. The slice is checked by running it with the solutions in place:
    it must pass there (see :func:`run_first_exercise`).
    """
    found = exercises(nb)
    if not found or found[0].test is None:
        raise AssignmentError("the notebook has no exercise with a test cell")
    first = found[0]
    code = [i for i, c in enumerate(nb.cells[:first.solution]) if c.cell_type == "code"]
    if full:
        return code + [first.solution, first.test]
    parameters = next((i for i in code if "parameters" in nb.cells[i].metadata.get("tags", [])), None)
    keep = set()
    if parameters is not None:
        keep.add(parameters)
        keep.update([i for i in code if i > parameters][:1])
    needed = names_used(nb.cells[first.solution].source, nb.cells[first.test].source)
    for index in reversed(code):
        defined = names_defined(nb.cells[index].source)
        if index in keep or defined is None or defined & needed:
            keep.add(index)
            needed |= names_used(nb.cells[index].source)
    return sorted(keep) + [first.solution, first.test]


@dataclass(frozen=True)
class ExerciseRun:
    """How running up to the end of the first exercise went: ``error`` is None when every cell passed."""

    cells: list[int]
    error: str | None = None  # the exception's name, e.g. "NotImplementedError"
    message: str = ""
    failed_cell: int | None = None  # index in the original notebook


def run_cells(cells: list[tuple[object, int]], cwd: Path, timeout: int = 1800) -> list[tuple[str, str] | None]:
    """Execute the cells ``(notebook, index)`` in this order in one fresh kernel of the kit's environment,
    going on past errors; returns each cell's error as ``(name, message)``, or None where it passed."""
    from nbclient import NotebookClient

    run_nb = copy.deepcopy(cells[0][0])
    run_nb.cells = [copy.deepcopy(nb.cells[i]) for nb, i in cells]
    client = NotebookClient(run_nb, kernel_name=KERNEL, timeout=timeout, allow_errors=True,
                            resources={"metadata": {"path": str(cwd)}})
    scratch = os.environ.get("METAGEN_RESULTS") or tempfile.mkdtemp(prefix="metagen-exercise-")
    with patch.dict(os.environ, METAGEN_RESULTS=scratch):  # figures and metrics stay out of results/
        client.execute()
    errors = []
    for cell in run_nb.cells:
        error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
        errors.append(None if error is None else (error["ename"], error["evalue"]))
    return errors


def _first_error(cells: list[int], errors: list[tuple[str, str] | None]) -> ExerciseRun:
    failed = next(((i, e) for i, e in zip(cells, errors) if e is not None), None)
    return ExerciseRun(cells) if failed is None else ExerciseRun(cells, failed[1][0], failed[1][1], failed[0])


def run_first_exercise(student_nb, solution_nb, cwd: Path,
                       full: bool = False) -> tuple[ExerciseRun, ExerciseRun]:
    """Run the student and the solution version up to the end of the first exercise, on the same cells.

    One kernel runs the cells before the exercise (the same in both versions: checked), then the student's
    solution and test cells, which must stop at nbgrader's stub (in the solution cell, or in the test that
    calls a stubbed function), then the solution's solution and test cells, which must pass: so the slice
    gives the exercise everything it needs, and the student's error comes from the stub. A test cell
    stopped by the stub has at most bound names that the solution's own test cell binds again. That the
    solution also passes in the notebook's own order is nbval's check of the committed notebook. A
    solution that fails here means the slice falls short: then it all runs again on every cell up to the
    exercise.
    """
    first = exercises(solution_nb)[0]
    cells = first_exercise_cells(solution_nb, full=full)
    if [student_nb.cells[i].cell_type for i in cells] != [solution_nb.cells[i].cell_type for i in cells]:
        raise AssignmentError("the student version's cells do not line up with the solution version's")
    shared = [i for i in cells if i not in (first.solution, first.test)]
    differing = [i for i in shared if student_nb.cells[i].source != solution_nb.cells[i].source]
    if differing:
        raise AssignmentError(f"cells {differing} before the first exercise differ between the student and "
                              "the solution version")
    exercise = [first.solution, first.test]
    order = ([(student_nb, i) for i in shared + exercise] + [(solution_nb, i) for i in exercise])
    errors = run_cells(order, cwd)
    student = _first_error(shared + exercise, errors[:len(shared) + 2])
    solution = _first_error(shared + exercise, errors[:len(shared)] + errors[-2:])
    if solution.error is not None and not full:
        return run_first_exercise(student_nb, solution_nb, cwd, full=True)
    return student, solution
