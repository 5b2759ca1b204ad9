"""Where a run's artifacts go: executed notebooks, figures and metrics, all under one output folder.

The harness sets ``METAGEN_RESULTS`` for the notebooks it runs; a notebook opened by hand writes to
``results/`` at the top of the repository.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .files import write_atomic, write_json

REPO = Path(__file__).resolve().parents[1]


def results_dir() -> Path:
    """The output folder of the current run."""
    return Path(os.environ.get("METAGEN_RESULTS", REPO / "results"))


def _plain(value):
    """Metrics as JSON-ready numbers (NumPy and torch scalars become floats), refusing NaN."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"metric value {value!r} is not finite; a results file only holds real numbers")
    return number


def record_metrics(notebook: str, metrics: dict) -> Path:
    """Write a notebook's headline metrics to ``<results>/metrics/<notebook>.json`` (atomically)."""
    path = results_dir() / "metrics" / f"{notebook}.json"
    write_json(path, {"notebook": notebook, "metrics": _plain(metrics)})
    return path


def save_figure(fig, name: str) -> Path:
    """Save a matplotlib figure as ``<results>/figures/<name>.png`` (atomically) and return the path."""
    path = results_dir() / "figures" / f"{name}.png"
    # Fixed metadata so that the same figure gives the same bytes run after run.
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None}))
    return path


def summarise(out: Path) -> dict:
    """Gather every ``metrics/*.json`` under ``out`` into ``summary.json`` and a Markdown table."""
    metrics = {}
    for path in sorted((out / "metrics").glob("*.json")):
        entry = json.loads(path.read_text())
        metrics[entry["notebook"]] = entry["metrics"]
    write_json(out / "summary.json", metrics)
    lines = ["| notebook | metric | value |", "|---|---|---|"]
    for notebook, values in metrics.items():
        for key, value in values.items():
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"| {notebook} | {key} | {shown} |")
    text = "\n".join(lines) + "\n"
    write_atomic(out / "summary.md", lambda tmp: tmp.write_text(text))
    return metrics


# --- committed results: notebooks/metrics.json and README's table ------------------------------------

COMMITTED = REPO / "notebooks" / "metrics.json"
README = REPO / "README.md"
TABLE_START, TABLE_END = "<!-- results:start -->", "<!-- results:end -->"


def library_sources() -> list[Path]:
    """The package's tracked source files (files git does not track yet are work in progress)."""
    import subprocess

    try:
        listed = subprocess.run(["git", "ls-files", "metagen_utils/*.py"], cwd=REPO, capture_output=True,
                                text=True, check=True).stdout.split()
        return sorted(REPO / name for name in listed)
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every source file counts
        return sorted((REPO / "metagen_utils").glob("*.py"))


def imported_modules(source: str, package: str = "metagen_utils") -> set[str]:
    """Names of the kit's modules that Python source imports, anywhere in it (lazy imports included):
    ``from metagen_utils import a, b``, ``import metagen_utils.c``, ``from metagen_utils.d import x``,
    and inside the package ``from .e import y`` / ``from . import f``."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith(package + ".")}
        elif isinstance(node, ast.ImportFrom):
            inside = node.level == 1 or node.module == package or (node.module or "").startswith(package + ".")
            if not inside or node.level > 1:
                continue
            module = node.module or ""
            module = module[len(package) + 1:] if module.startswith(package) else module
            if module:
                names.add(module.split(".")[0])
            else:  # from . import a, b  /  from metagen_utils import a, b
                names |= {a.name for a in node.names}
    return names


def notebook_sources(notebook: Path) -> list[Path]:
    """The library files a notebook's numbers depend on: the modules its code cells import, and what
    those import in turn (the package's ``__init__`` always runs)."""
    import nbformat

    available = {p.stem: p for p in library_sources()}
    nb = nbformat.read(str(notebook), as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    # Notebook cells may hold IPython magics that are not Python; those lines never import the kit.
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    todo, seen = imported_modules(code) | {"__init__"}, set()
    while todo:
        name = todo.pop()
        if name in seen or name not in available:
            continue
        seen.add(name)
        todo |= imported_modules(available[name].read_text())
    return sorted(available[name] for name in seen)


def code_fingerprint(notebook: Path) -> str:
    """sha256 over the notebook's code cells and the library modules they depend on: what the
    notebook's numbers depend on. Results recorded under another fingerprint are older than the code."""
    import hashlib

    import nbformat

    digest = hashlib.sha256()
    for path in notebook_sources(notebook):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.encode() + b"\0")
    return digest.hexdigest()


def update_committed(notebook: Path, run_dir: Path, seconds: float) -> None:
    """Record a regenerated notebook's metrics, wall time and code fingerprint in ``notebooks/metrics.json``."""
    path = run_dir / "metrics" / f"{notebook.stem}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{notebook.name} wrote no metrics file ({path}); every notebook must call "
                                "results.record_metrics")
    committed = json.loads(COMMITTED.read_text()) if COMMITTED.is_file() else {}
    committed[notebook.stem] = {"metrics": json.loads(path.read_text())["metrics"],
                                "code_sha256": code_fingerprint(notebook), "seconds": round(seconds, 1)}
    write_json(COMMITTED, committed)


def committed_seconds() -> dict[str, float]:
    """Each notebook's wall time when its committed outputs were made (default parameters, CPU)."""
    if not COMMITTED.is_file():
        return {}
    return {name: entry["seconds"] for name, entry in json.loads(COMMITTED.read_text()).items()
            if "seconds" in entry}


def readme_table(committed: dict) -> str:
    """The Markdown table README.md shows between its results markers."""
    lines = ["| notebook | metric | value |", "|---|---|---|"]
    for notebook, entry in committed.items():
        for key, value in entry["metrics"].items():
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"| {notebook} | {key} | {shown} |")
    return "\n".join(lines)


def update_readme() -> None:
    """Rewrite README.md's results table from ``notebooks/metrics.json``."""
    text = README.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    table = readme_table(json.loads(COMMITTED.read_text()))
    new = text[:start] + "\n" + table + "\n" + text[end:]
    write_atomic(README, lambda tmp: tmp.write_text(new))
