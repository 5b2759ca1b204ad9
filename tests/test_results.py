"""Committed numbers: README's table is the committed metrics, and a run of the notebooks reproduces them."""
import json
import math
import re
import os
from pathlib import Path

import pytest

from metagen_utils import results
from metagen_utils.kit import committed as kept, harness


def committed() -> dict:
    return json.loads(kept.COMMITTED.read_text())


def test_readme_table_is_the_committed_headline_metrics():
    assert kept.shown_table(kept.README) == kept.readme_table(committed()).strip(), (
        "README.md's results table differs from notebooks/metrics.json; run `make notebooks`")


def test_the_results_page_shows_every_committed_metric():
    assert kept.shown_table(kept.RESULTS_PAGE) == kept.full_table(committed()).strip(), (
        "docs/results.md's table differs from notebooks/metrics.json; run `make notebooks`")


def test_every_figure_readme_shows_was_made_by_a_regeneration():
    shown = re.findall(r"!\[[^\]]*\]\((docs/figures/[^)]+)\)", kept.README.read_text())
    assert sorted(shown) == sorted(f"docs/figures/{name}.png" for name in kept.README_FIGURES)
    for path in shown:
        assert (kept.REPO / path).is_file(), f"README shows {path}, which `make notebooks` has not written"


def test_regenerating_one_notebook_copies_only_its_own_readme_figures(tmp_path, monkeypatch):
    # the scratch folder keeps every notebook's figures from earlier regenerations; only this one's are new
    monkeypatch.setattr(kept, "FIGURES", tmp_path / "docs")
    made = tmp_path / "made"
    made.mkdir()
    for name in ("02_completions", "05_scores", "02_not_in_readme"):
        (made / f"{name}.png").write_bytes(name.encode())
    kept.update_figures(made, "02_linear_meta_network")
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["02_completions.png"]


def test_a_headline_metric_that_no_notebook_records_is_named():
    with pytest.raises(KeyError, match="01_preprocessing.classes"):
        kept.readme_table({})


@pytest.mark.parametrize("path", harness.notebook_paths(), ids=lambda p: p.name)
def test_every_notebook_has_committed_finite_metrics(path):
    entry = committed().get(path.stem)
    assert entry is not None, f"{path.name} has no entry in notebooks/metrics.json; run `make notebooks`"
    assert all(not isinstance(v, float) or math.isfinite(v) for v in entry["metrics"].values())


def test_metrics_refuse_non_finite_values(tmp_path, monkeypatch):
    monkeypatch.setenv("METAGEN_RESULTS", str(tmp_path))
    with pytest.raises(ValueError, match="nan is not finite"):
        results.record_metrics("x", {"psnr": float("nan")})
    assert not (tmp_path / "metrics" / "x.json").exists()


def test_summary_gathers_every_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("METAGEN_RESULTS", str(tmp_path))
    results.record_metrics("01_a", {"n": 3})
    results.record_metrics("02_b", {"psnr": 17.25})
    assert results.summarise(tmp_path) == {"01_a": {"n": 3}, "02_b": {"psnr": 17.25}}
    assert "| 02_b | psnr | 17.25 |" in (tmp_path / "summary.md").read_text()


@pytest.mark.after_notebooks
def test_this_runs_results_files_are_identical_to_the_committed_run(request):
    """Determinism, one seed, CPU: the results files the notebooks wrote when nbval executed them in this
    test run equal, number for number, those of the run that made the committed outputs (papermill,
    ``make notebooks``) — two runs, on different days, possibly on different machines of the same kind."""
    executed = sorted({Path(str(item.fspath)).stem for item in request.session.items
                       if item.fspath.ext == ".ipynb"})
    assert executed, "conftest deselects this test when no notebook runs in this session"
    written = Path(os.environ["METAGEN_RESULTS"]) / "metrics"
    for stem in executed:
        path = written / f"{stem}.json"
        assert path.is_file(), f"{stem} executed in this run but wrote no {path}; did it fail?"
        this_run = json.loads(path.read_text())["metrics"]
        committed_run = committed()[stem]["metrics"]
        differ = {k: (committed_run.get(k), this_run.get(k)) for k in committed_run.keys() | this_run.keys()
                  if committed_run.get(k) != this_run.get(k)}
        assert not differ, f"{stem}: results differ from the committed run (committed, this run): {differ}"
