"""Committed numbers: README's table is the committed metrics, and the metrics are not older than the code."""
import json
import math
import os
from pathlib import Path

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


def test_fingerprint_covers_the_modules_a_notebook_imports_and_theirs():
    assert results.imported_modules("from metagen_utils import a, b as c\nimport metagen_utils.d\n"
                                    "from metagen_utils.e import f\ndef g():\n    from .h import i\n"
                                    "    from . import j\nimport numpy") == {"a", "b", "d", "e", "h", "j"}
    names = {p.stem: [s.stem for s in results.notebook_sources(p)] for p in harness.notebook_paths()}
    assert "generation" in names["04_meta_generation"] and "errors" in names["04_meta_generation"]
    assert "curvature" in names["03_gradient_meta_optimizer"]
    assert not {"harness", "site", "cli", "generation", "curvature"} & set(names["01_preprocessing"])


def test_changing_an_imported_module_changes_the_fingerprint(tmp_path, monkeypatch):
    package = tmp_path / "metagen_utils"
    package.mkdir()
    for name, text in {"__init__": "", "a": "from .b import x\n", "b": "x = 1\n", "c": "y = 2\n"}.items():
        (package / f"{name}.py").write_text(text)
    monkeypatch.setattr(results, "library_sources", lambda: sorted(package.glob("*.py")))
    nb = tmp_path / "01_n.ipynb"
    import nbformat
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("from metagen_utils import a")]),
                   str(nb))
    before = results.code_fingerprint(nb)
    (package / "c.py").write_text("y = 3\n")  # not imported: same numbers, same fingerprint
    assert results.code_fingerprint(nb) == before
    (package / "b.py").write_text("x = 2\n")  # imported by a, which the notebook imports
    assert results.code_fingerprint(nb) != before
