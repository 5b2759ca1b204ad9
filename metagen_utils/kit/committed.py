"""The committed results: ``notebooks/metrics.json`` (each notebook's metrics and wall time, written by
``make notebooks``) and README.md's results table made from it.

Nothing here fingerprints the code. What ties the committed numbers to the code is the test suite
re-executing every notebook: nbval compares each printed output with the committed one, and
``tests/test_results.py`` compares every metric the run wrote with ``notebooks/metrics.json``, exactly.
A change anywhere (library or notebook) that moves a committed number therefore fails the tests, and one
that moves none (a docstring, a help text, the command line, a module moved) costs no regeneration. A
hash of the sources could only add false alarms to that.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..files import write_atomic, write_json
from ..results import REPO, metrics_table

COMMITTED = REPO / "notebooks" / "metrics.json"
README = REPO / "README.md"
TABLE_START, TABLE_END = "<!-- results:start -->", "<!-- results:end -->"


def update_committed(notebook: Path, run_dir: Path, seconds: float) -> None:
    """Record a regenerated notebook's metrics and wall time in ``notebooks/metrics.json``."""
    path = run_dir / "metrics" / f"{notebook.stem}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{notebook.name} wrote no metrics file ({path}); every notebook must call "
                                "results.record_metrics")
    committed = json.loads(COMMITTED.read_text()) if COMMITTED.is_file() else {}
    committed[notebook.stem] = {"metrics": json.loads(path.read_text())["metrics"], "seconds": round(seconds, 1)}
    write_json(COMMITTED, committed)


def committed_seconds() -> dict[str, float]:
    """Each notebook's wall time when its committed outputs were made (default parameters, CPU)."""
    if not COMMITTED.is_file():
        return {}
    return {name: entry["seconds"] for name, entry in json.loads(COMMITTED.read_text()).items()
            if "seconds" in entry}


def readme_table(committed: dict) -> str:
    """The Markdown table README.md shows between its results markers."""
    return metrics_table({notebook: entry["metrics"] for notebook, entry in committed.items()})


def update_readme() -> None:
    """Rewrite README.md's results table from ``notebooks/metrics.json``."""
    text = README.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    table = readme_table(json.loads(COMMITTED.read_text()))
    new = text[:start] + "\n" + table + "\n" + text[end:]
    write_atomic(README, lambda tmp: tmp.write_text(new))
