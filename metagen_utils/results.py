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
    text = metrics_table(metrics) + "\n"
    write_atomic(out / "summary.md", lambda tmp: tmp.write_text(text))
    return metrics


def metrics_table(metrics: dict[str, dict]) -> str:
    """``{notebook: {metric: value}}`` as a Markdown table, numbers to 4 significant digits."""
    lines = ["| notebook | metric | value |", "|---|---|---|"]
    for notebook, values in metrics.items():
        for key, value in values.items():
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"| {notebook} | {key} | {shown} |")
    return "\n".join(lines)
