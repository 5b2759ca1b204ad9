"""The notebook harness: parameters checked before anything runs, failures named, outputs whole."""
import json
from pathlib import Path

import nbformat
import pytest

from metagen_utils.kit import harness
from metagen_utils.errors import ConfigError, NotebookError

ROOT = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, body: str, params: str = 'PROFILE = "cpu"\nSEED = 0\nSCALE = 2') -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(params), nbformat.v4.new_code_cell(body)]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


def single_notebook_series(tmp_path: Path, name: str, body: str) -> Path:
    folder = tmp_path / "nbs"
    folder.mkdir()
    write_notebook(folder / name, body)
    return folder


@pytest.fixture
def series(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_first.ipynb",
                   "from metagen_utils.results import record_metrics\n"
                   "record_metrics('01_first', {'scaled_seed': SCALE * (SEED + 1), 'profile': PROFILE})\n"
                   "print('scaled', SCALE * (SEED + 1))\n"
                   "import warnings; warnings.warn('a warning of the cell itself')")
    return folder


def test_unknown_parameter_is_refused_with_the_valid_names(series, tmp_path):
    with pytest.raises(ConfigError, match=r"01_first.ipynb has no parameter SEEED; its parameters are PROFILE, SEED, SCALE"):
        harness.run(tmp_path / "out", {"SEEED": 1}, folder=series)
    assert not (tmp_path / "out").exists()  # refused before any notebook ran


def test_unknown_profile_is_refused_with_the_valid_profiles(series, tmp_path):
    with pytest.raises(ConfigError, match=r"PROFILE='gpu' is not valid; expected one of 'cpu', 'full'"):
        harness.run(tmp_path / "out", {"PROFILE": "gpu"}, folder=series)


def test_cli_reports_a_bad_parameter_as_an_error_and_exit_code(capsys):
    assert harness.main(["run", "--only", "01", "-p", "NO_SUCH_PARAMETER", "1"]) == 2
    assert "has no parameter NO_SUCH_PARAMETER" in capsys.readouterr().err


@pytest.mark.slow
def test_run_injects_non_default_parameters_and_gathers_metrics(series, tmp_path, capfd):
    out = tmp_path / "out"
    metrics = harness.run(out, {"SEED": 4, "SCALE": 10}, folder=series)
    # the kernel's start-up warning about TCP on localhost does not reach the terminal; the cell's own does
    # reach the notebook
    assert "without encryption" not in capfd.readouterr().err
    assert metrics == {"01_first": {"scaled_seed": 50, "profile": "cpu"}}
    executed = nbformat.read(out / "notebooks" / "01_first.ipynb", as_version=4)
    assert any("scaled 50" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert any("a warning of the cell itself" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert json.loads((out / "summary.json").read_text())["01_first"]["scaled_seed"] == 50
    assert "| 01_first | scaled_seed | 50 |" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_failing_cell_names_notebook_and_cell_and_leaves_no_output(tmp_path):
    folder = single_notebook_series(tmp_path, "01_broken.ipynb", "x = 1\nraise ValueError('the reason')")
    with pytest.raises(NotebookError, match=r"01_broken.ipynb: cell 1 .*starting 'x = 1'.* raised ValueError: the reason"):
        harness.run(tmp_path / "out", folder=folder)
    assert not (tmp_path / "out" / "notebooks" / "01_broken.ipynb").exists()
    assert (tmp_path / "out" / "notebooks" / "01_broken.failed.ipynb").exists()


def test_parameter_values_are_parsed_like_papermill():
    assert harness.parse_value("3") == 3 and harness.parse_value("None") is None
    assert harness.parse_value("full") == "full" and harness.parse_value("/data/omniglot") == "/data/omniglot"


def test_strip_run_metadata_removes_timings_but_not_tags():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    nb.metadata["papermill"] = {"duration": 1.0}
    nb.cells[0].metadata.update(papermill={"duration": 0.1}, execution={"x": 1}, tags=["parameters"])
    harness.strip_run_metadata(nb)
    assert "papermill" not in nb.metadata and nb.cells[0].metadata == {"tags": ["parameters"]}


@pytest.mark.parametrize("path", harness.notebook_paths(), ids=lambda p: p.name)
def test_committed_notebooks_are_executed_clean_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    assert {"PROFILE", "SEED", "DEVICE", "DATA"} <= set(harness.notebook_parameters(path))
    assert all(c.execution_count for c in code), "committed outputs come from a full run (make notebooks)"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    assert "papermill" not in nb.metadata and not any("papermill" in c.metadata for c in nb.cells)


@pytest.mark.slow
def test_a_notebook_that_records_no_metrics_does_not_count_as_run(tmp_path):
    folder = single_notebook_series(tmp_path, "01_lazy.ipynb", "print('did nothing')")
    with pytest.raises(NotebookError, match=r"01_lazy.ipynb finished without writing its metrics file"):
        harness.run(tmp_path / "out", folder=folder)


@pytest.mark.slow
def test_a_notebook_far_faster_than_its_committed_run_does_not_count_as_run(series, tmp_path):
    with pytest.raises(NotebookError, match=r"01_first.ipynb finished in .* its committed run at these "
                                            r"parameters took 1000.0 s"):
        harness.run(tmp_path / "out", folder=series, expected_seconds={"01_first": 1000.0})
    assert harness.run(tmp_path / "out2", folder=series, expected_seconds={"01_first": 0.5})


def test_committed_timings_apply_only_at_default_scale_on_the_cpu(monkeypatch):
    monkeypatch.setattr(harness, "committed_seconds", lambda: {"01_x": 20.0})
    assert harness.timing_reference({}) == ({"01_x": 20.0}, "")
    assert harness.timing_reference({"SEED": 3, "PROFILE": "cpu", "DEVICE": "cpu"})[0] == {"01_x": 20.0}
    assert harness.timing_reference({"PROFILE": "full"}) == ({}, "parameters PROFILE change the amount of work")
    assert harness.timing_reference({"NUM_TASKS": 10})[1] == "parameters NUM_TASKS change the amount of work"
    assert harness.timing_reference({"DEVICE": "cuda"})[1] == "DEVICE='cuda' is not the CPU"


def test_every_committed_notebook_has_a_wall_time_for_the_too_fast_check():
    seconds = harness.committed_seconds()
    assert {p.stem for p in harness.notebook_paths()} <= set(seconds)
    assert all(s > 5 for s in seconds.values())
