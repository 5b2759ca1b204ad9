"""The committed results: ``notebooks/metrics.json`` (each notebook's metrics and wall time, written by
``make notebooks``), the tables made from it (README.md's headline numbers, every metric in
``docs/results.md``) and README's one figure per notebook (``docs/figures/``).

Nothing here fingerprints the code. What ties the committed numbers to the code is the test suite
re-executing every notebook: nbval compares each printed output with the committed one, and
``tests/test_results.py`` compares every metric the run wrote with ``notebooks/metrics.json``, exactly.
A change anywhere (library or notebook) that moves a committed number therefore fails the tests, and one
that moves none (a docstring, a help text, the command line, a module moved) costs no regeneration. A
hash of the sources could only add false alarms to that.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..files import write_atomic, write_json
from ..results import REPO, metrics_table

COMMITTED = REPO / "notebooks" / "metrics.json"
README = REPO / "README.md"
RESULTS_PAGE = REPO / "docs" / "results.md"
FIGURES = REPO / "docs" / "figures"
TABLE_START, TABLE_END = "<!-- results:start -->", "<!-- results:end -->"
# The numbers a newcomer reads in README.md, by notebook; docs/results.md has every metric.
HEADLINE = {
    "01_preprocessing": ["classes", "images"],
    "02_linear_meta_network": ["psnr_k5_zero", "psnr_k5_mean", "psnr_k5_maml", "psnr_k5_gaussian"],
    "03_gradient_meta_optimizer": ["psnr_k5_mean", "psnr_k5_best", "best_update", "psnr_feature_reference"],
    "04_meta_generation": ["k1_adapted_fidelity", "k5_adapted_fidelity", "k1_support_gaussian_fidelity",
                           "k5_support_gaussian_fidelity", "k1_real_support_fidelity", "k5_real_support_fidelity",
                           "k1_full_weights_fidelity", "k5_full_weights_fidelity"],
    "05_class_inference": ["k1_gradient_fidelity", "k5_gradient_fidelity", "k1_amortised_fidelity",
                           "k5_amortised_fidelity", "k1_hybrid_fidelity", "k5_hybrid_fidelity",
                           "k1_full_hybrid_fidelity", "k5_full_hybrid_fidelity", "k1_hybrid_centred_fidelity",
                           "k5_hybrid_centred_fidelity", "k1_full_hybrid_centred_fidelity",
                           "k5_full_hybrid_centred_fidelity"],
}
# README's one figure per notebook, copied from each regenerated run's figures.
README_FIGURES = ("01_task", "02_completions", "03_psnr_vs_k", "04_samples", "05_scores")


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
    """The Markdown table README.md shows between its results markers: the :data:`HEADLINE` metrics."""
    missing = [f"{nb}.{name}" for nb, names in HEADLINE.items() for name in names
               if name not in committed.get(nb, {}).get("metrics", {})]
    if missing:
        raise KeyError(f"README's headline metrics {missing} are not in notebooks/metrics.json; rename them in "
                       "kit.committed.HEADLINE or run `make notebooks`")
    return metrics_table({nb: {name: committed[nb]["metrics"][name] for name in names}
                          for nb, names in HEADLINE.items()})


def full_table(committed: dict) -> str:
    """The Markdown table of every committed metric, shown in ``docs/results.md``."""
    return metrics_table({notebook: entry["metrics"] for notebook, entry in committed.items()})


def _replace_table(path: Path, table: str) -> None:
    text = path.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    new = text[:start] + "\n" + table + "\n" + text[end:]
    write_atomic(path, lambda tmp: tmp.write_text(new))


def shown_table(path: Path) -> str:
    """The table between ``path``'s results markers."""
    text = path.read_text()
    return text[text.index(TABLE_START) + len(TABLE_START):text.index(TABLE_END)].strip()


def update_readme() -> None:
    """Rewrite README.md's headline table and docs/results.md's full table from ``notebooks/metrics.json``."""
    committed = json.loads(COMMITTED.read_text())
    _replace_table(README, readme_table(committed))
    _replace_table(RESULTS_PAGE, full_table(committed))


def update_figures(figures: Path, notebook: str) -> None:
    """Copy README's figures (:data:`README_FIGURES`) of ``notebook`` (its stem, e.g. ``"05_class_inference"``)
    that a regenerated run wrote into ``docs/figures/``. Only that notebook's: ``figures`` also holds what
    earlier regenerations of the other notebooks left there, which may be stale."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    prefix = notebook.split("_")[0] + "_"
    for name in README_FIGURES:
        if name.startswith(prefix) and (made := figures / f"{name}.png").is_file():
            shutil.copyfile(made, FIGURES / made.name)
