"""The package's layout: no import cycles between its modules or its subpackages, and the learning code
does not reach into the kit's machinery."""
import ast
from pathlib import Path

import metagen_utils

PACKAGE = Path(metagen_utils.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The kit's modules ``path`` imports anywhere in it (lazy imports too), as dotted names."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("metagen_utils")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("metagen_utils"):
                target = node.module
            else:
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}     # from .pkg import module
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        # importing a.b.c runs a/__init__ and a/b/__init__ first; those edges are Python's, not the code's
        edges[name] = {t for t in imports(path) if t in modules and t != name
                       and not (name.startswith(t + ".") and modules[t].name == "__init__.py")}
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_module_imports_itself_back_through_others():
    assert cycle(graph()) is None, " → ".join(cycle(graph()))


def test_no_two_subpackages_import_each_other():
    edges = graph()
    between = {}
    for source, targets in edges.items():
        for target in targets:
            a, b = subpackage(source), subpackage(target)
            if a != b:
                between.setdefault(a, set()).add(b)
    assert cycle(between) is None, " → ".join(cycle(between))


def test_the_learning_code_never_imports_the_kit():
    edges = graph()
    reaching = {source: sorted(t for t in targets if t.startswith("metagen_utils.kit"))
                for source, targets in edges.items() if not source.startswith("metagen_utils.kit")}
    assert not {s: t for s, t in reaching.items() if t}


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_docstring_maps_every_subpackage():
    listed = metagen_utils.__doc__
    for path in sorted(PACKAGE.iterdir()):
        if path.is_dir() and (path / "__init__.py").is_file():
            assert f"{path.name}/" in listed, path.name


def test_notebooks_read_every_profile_difference_from_profiles_py():
    import json
    import re

    sized_by_name = re.compile(r"if PROFILE == [\"'](?:cpu|full)[\"'] else")   # e.g. `4 if PROFILE == "full" else 1`
    for path in sorted((PACKAGE.parent / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert not sized_by_name.search("".join(cell["source"])), f"{path.name}: use metagen_utils.profiles"
