"""Committed numbers: README's table is the committed metrics, and the metrics are not older than the code."""
import json
import math

import pytest

from metagen_utils import harness, results


def committed() -> dict:
    return json.loads(results.COMMITTED.read_text())


def test_readme_table_is_the_committed_metrics():
    text = results.README.read_text()
    shown = text[text.index(results.TABLE_START) + len(results.TABLE_START):text.index(results.TABLE_END)]
    assert shown.strip() == results.readme_table(committed()).strip(), (
        "README.md's results table differs from notebooks/metrics.json; run `make notebooks`")


@pytest.mark.parametrize("path", harness.notebook_paths(), ids=lambda p: p.name)
def test_every_notebook_has_metrics_made_by_the_current_code(path):
    entry = committed().get(path.stem)
    assert entry is not None, f"{path.name} has no entry in notebooks/metrics.json; run `make notebooks`"
    assert entry["code_sha256"] == results.code_fingerprint(path), (
        f"{path.name}'s committed numbers are older than the code (metagen_utils or the notebook changed "
        "since); run `make notebooks` and commit")
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
