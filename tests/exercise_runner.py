"""Running a notebook's exercises without the rest of the notebook (a test helper, not the kit's).

``exercise_cells`` is a backward slice over the notebook's code cells: the set-up cells, and the cells
whose names the exercises read, transitively, so that a test can run every exercise without minutes of
training before them. ``run_ladder`` runs that slice once, then each exercise with the student's stub,
with wrong answers and with the solution, in one fresh kernel.
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

import nbformat

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

    def scan(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, (ast.For, ast.AsyncFor)):
                # the loop variable is bound before the body reads it: `for k in …: f(k)` needs no k
                free.update(_global_reads(ast.unparse(statement.iter)) - bound)
                bound.update(node.id for node in ast.walk(statement.target) if isinstance(node, ast.Name))
                scan(statement.body + statement.orelse)
                continue
            free.update(_global_reads(ast.unparse(statement)) - bound)
            bound.update(names_defined(ast.unparse(statement)) or set())

    for source in sources:
        tree = _parse(source)
        if tree is not None:
            scan(tree.body)
    return free


def exercise_cells(nb, full: bool = False) -> tuple[list[int], list[int]]:
    """The code cells to run before the exercises, and the code cells of the exercise section (from the
    first solution cell on: solutions, tests and the helpers between them).

    ``full=True``: every code cell before the exercises. Otherwise a backward slice, so that minutes of
    training the exercises do not read are skipped: the ``parameters`` cell and the setup cell after it,
    and every earlier cell that binds a name the exercise section reads (and, in turn, those cells' own
    inputs). The slice is checked by running it with the solutions in place: they must pass there (see
    :func:`run_ladder`).
    """
    found = exercises(nb)
    if not found or any(ex.test is None for ex in found):
        raise AssignmentError("the notebook has an exercise without a test cell")
    first = found[0].solution
    section = [i for i, c in enumerate(nb.cells) if i >= first and c.cell_type == "code"]
    code = [i for i, c in enumerate(nb.cells[:first]) if c.cell_type == "code"]
    if full:
        return code, section
    parameters = next((i for i in code if "parameters" in nb.cells[i].metadata.get("tags", [])), None)
    keep = set()
    if parameters is not None:
        keep.add(parameters)
        keep.update([i for i in code if i > parameters][:1])
    needed = names_used(*(nb.cells[i].source for i in section))
    for index in reversed(code):
        defined = names_defined(nb.cells[index].source)
        if index in keep or defined is None or defined & needed:
            keep.add(index)
            needed |= names_used(nb.cells[index].source)
    return sorted(keep), section


Error = tuple[str, str]  # (exception name, message)


def run_cells(nb, sources: list[str], cwd: Path, timeout: int = 1800) -> list[Error | None]:
    """Execute ``sources`` as code cells, in this order, in one fresh kernel of the kit's environment (with
    ``nb``'s metadata), going on past errors; returns each cell's error, or None where it passed."""
    from nbclient import NotebookClient

    run_nb = copy.deepcopy(nb)
    run_nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
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


@dataclass(frozen=True)
class Ladder:
    """How each answer to each exercise fared against that exercise's test cell (hidden tests included):
    ``answers[number][name]`` is the first error of running the answer then the test, None if both
    passed. Names: ``"student"`` (the student version's stub), ``"solution"``, and each wrong answer's."""

    setup_error: tuple[int, Error] | None  # a cell before the exercises that failed: (index, error)
    answers: dict[int, dict[str, Error | None]]


def run_ladder(student_nb, solution_nb, wrong: dict[int, dict[str, str]], cwd: Path,
               full: bool = False) -> Ladder:
    """Run every exercise with every answer, in one kernel: the cells the exercises need (the same in
    both versions: checked), then, exercise by exercise, the student's stub, each of ``wrong[number]``
    (name → source of the solution cell) and last the solution, each followed by the exercise's test
    cell. The solution runs last, so the next exercise starts from the state the notebook leaves. A
    solution that fails means the slice falls short: then it all runs again on every cell before the
    exercises."""
    setup, section = exercise_cells(solution_nb, full=full)
    if [c.cell_type for c in student_nb.cells] != [c.cell_type for c in solution_nb.cells]:
        raise AssignmentError("the student version's cells do not line up with the solution version's")
    differing = [i for i in setup if student_nb.cells[i].source != solution_nb.cells[i].source]
    if differing:
        raise AssignmentError(f"cells {differing} before the exercises differ between the student and the "
                              "solution version")
    by_solution = {ex.solution: ex for ex in exercises(solution_nb)}
    tests = {ex.test for ex in by_solution.values()}
    sources, where = [solution_nb.cells[i].source for i in setup], []
    for index in section:
        if index in tests:
            continue
        ex = by_solution.get(index)
        if ex is None:                                    # a helper between the exercises
            sources.append(solution_nb.cells[index].source)
            continue
        answers = {"student": student_nb.cells[index].source, **wrong.get(ex.number, {}),
                   "solution": solution_nb.cells[index].source}
        for name, answer in answers.items():
            where.append((ex.number, name, len(sources)))
            sources += [answer, solution_nb.cells[ex.test].source]
    errors = run_cells(solution_nb, sources, cwd)
    failed = next(((i, e) for i, e in zip(setup, errors) if e is not None), None)
    result: dict[int, dict[str, Error | None]] = {}
    for number, name, at in where:
        result.setdefault(number, {})[name] = errors[at] or errors[at + 1]
    ladder = Ladder(failed, result)
    if not full and (failed or any(r["solution"] is not None for r in result.values())):
        return run_ladder(student_nb, solution_nb, wrong, cwd, full=True)
    return ladder
