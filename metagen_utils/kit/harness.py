"""Executing the notebook series with papermill: the kit's main job, and how committed outputs are made.

    python -m metagen_utils.kit.harness run [--out results] [-p PROFILE full] [-p DATA /path/to/omniglot]
    python -m metagen_utils.kit.harness regenerate        # rewrite the committed outputs in notebooks/
    python -m metagen_utils.kit.harness parameters        # what each notebook accepts

``run`` executes every notebook in order into ``<out>/notebooks``; the notebooks write their figures to
``<out>/figures`` and metrics to ``<out>/metrics``, gathered into ``<out>/summary.{json,md}``.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path
from unittest.mock import patch

import nbformat

from ..config import check_choice
from ..kernels import pin_cpu_kernels
from ..errors import ConfigError, NotebookError
from ..files import write_atomic, write_json
from ..profiles import PROFILES
from ..results import REPO, summarise
from .committed import committed_seconds, update_committed, update_figures, update_readme

NOTEBOOKS = REPO / "notebooks"
KERNEL = "python3"  # the kernel of the interpreter running the harness, i.e. the kit's environment
# The kernel listens on 127.0.0.1 only, yet warns at every start that TCP is unencrypted: a line per notebook
# that reads like a fault to a newcomer. Its log shows errors only; a cell's own warnings still reach the
# notebook's output.
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]


def notebook_paths(folder: Path = NOTEBOOKS, only: list[str] | None = None) -> list[Path]:
    """The series in order (``01_….ipynb``, ``02_….ipynb``, …), or those whose names start with ``only``."""
    paths = sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if only:
        chosen = [p for p in paths if any(p.name.startswith(o) for o in only)]
        missing = [o for o in only if not any(p.name.startswith(o) for p in paths)]
        if missing:
            raise ConfigError(f"no notebook in {folder} starts with {missing}; there are {[p.name for p in paths]}")
        paths = chosen
    if not paths:
        raise ConfigError(f"no notebooks (NN_name.ipynb) found in {folder}")
    return paths


def notebook_parameters(path: Path) -> dict[str, str]:
    """The names and default values (as source text) of a notebook's ``parameters`` cell."""
    import papermill

    params = papermill.inspect_notebook(str(path))
    if not params:
        raise ConfigError(f"{path.name} has no cell tagged 'parameters'")
    return {name: info["default"] for name, info in params.items()}


def parse_value(text: str):
    """A ``-p NAME VALUE`` value: a Python literal if it is one (``3``, ``None``, ``'x'``), else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def check_parameters(path: Path, parameters: dict) -> None:
    """Refuse, with the valid names listed, a parameter the notebook does not have or a bad profile."""
    known = notebook_parameters(path)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ConfigError(f"{path.name} has no parameter {', '.join(unknown)}; its parameters are "
                          f"{', '.join(known)}")
    if "PROFILE" in parameters:
        check_choice("PROFILE", parameters["PROFILE"], PROFILES)


def execute(path: Path, output: Path, parameters: dict | None = None, timeout: int = 1800) -> float:
    """Run one notebook with papermill into ``output``; return its wall time in seconds.

    The output appears only when the notebook finished; a failed run is kept beside it as
    ``<name>.failed.ipynb`` and the error names the notebook, the cell and what it raised.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.stem}.running.ipynb")
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(path), str(partial), parameters=parameters or {}, kernel_name=KERNEL,
                                   cwd=str(path.parent), progress_bar=False, log_output=False,
                                   execution_timeout=timeout, extra_arguments=QUIET_KERNEL)
    except PapermillExecutionError as e:
        failed = output.with_name(f"{output.stem}.failed.ipynb")
        os.replace(partial, failed)
        first_line = e.source.strip().splitlines()[0] if e.source.strip() else ""
        raise NotebookError(f"{path.name}: cell {e.cell_index} (execution count {e.exec_count}, starting "
                            f"{first_line!r}) raised {e.ename}: {e.evalue}. The executed notebook is at "
                            f"{failed}") from None
    os.replace(partial, output)
    return time.perf_counter() - start


# A run at default parameters on a CPU that takes under this fraction of the committed run's wall time
# did not do the work the committed one did (cells emptied, training skipped, results reused). Machines
# differ by 2-3x, not 4x, for these single-threaded notebooks.
SUSPICIOUS_FRACTION = 0.25


def check_really_ran(executed: Path, metrics: Path, started: float, seconds: float | None = None,
                     expected_seconds: float | None = None) -> None:
    """Refuse a run that did not happen as it claims: every code cell executed, a metrics file written
    by this run (not left over from an earlier one), and, when the committed run's wall time is known
    for these parameters, not suspiciously faster than it."""
    nb = nbformat.read(str(executed), as_version=4)
    skipped = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()
               and c.get("execution_count") is None]
    if skipped:
        raise NotebookError(f"{executed.name}: code cells {skipped} were never executed")
    if not metrics.is_file() or metrics.stat().st_mtime < started:
        raise NotebookError(f"{executed.name} finished without writing its metrics file {metrics.name} in "
                            "this run; every notebook ends with results.record_metrics(...)")
    if seconds is not None and expected_seconds and seconds < SUSPICIOUS_FRACTION * expected_seconds:
        raise NotebookError(f"{executed.name} finished in {seconds:.1f} s; its committed run at these "
                            f"parameters took {expected_seconds:.1f} s, and a real run is never under "
                            f"{SUSPICIOUS_FRACTION:.0%} of that. Were cells emptied or training skipped?")


def timing_reference(parameters: dict) -> tuple[dict[str, float], str]:
    """The committed wall times to hold a run to, and why there are none when they do not apply:
    they were measured at default parameters on a CPU, so any other scale or an accelerator is exempt."""
    scale = sorted(set(parameters) - {"SEED", "DEVICE"})
    if parameters.get("PROFILE", "cpu") == "cpu":
        scale = [name for name in scale if name != "PROFILE"]
    if scale:
        return {}, f"parameters {', '.join(scale)} change the amount of work"
    device = parameters.get("DEVICE", "auto")
    if device not in ("auto", "cpu"):
        return {}, f"DEVICE={device!r} is not the CPU"
    if device == "auto":
        import torch

        if torch.cuda.is_available() or torch.backends.mps.is_available():
            return {}, "an accelerator is in use"
    return committed_seconds(), ""


def run(out: Path, parameters: dict | None = None, only: list[str] | None = None,
        folder: Path = NOTEBOOKS, expected_seconds: dict[str, float] | None = None) -> dict:
    """The main job: execute the series in order, then gather metrics into ``<out>/summary.*``.

    ``expected_seconds`` (notebook stem → committed wall time) arms the speed check of
    :func:`check_really_ran`; by default it is the committed timings when they apply (see
    :func:`timing_reference`).
    """
    parameters = parameters or {}
    paths = notebook_paths(folder, only)
    for path in paths:  # check every notebook's parameters before spending minutes on the first
        check_parameters(path, {k: v for k, v in parameters.items()})
    if expected_seconds is None:
        expected_seconds, why_not = timing_reference(parameters) if folder == NOTEBOOKS else ({}, "")
        if why_not:
            print(f"(the too-fast check is off: {why_not})", flush=True)
    out = Path(out).resolve()
    timings = {}
    with patch.dict(os.environ, METAGEN_RESULTS=str(out), MPLBACKEND="module://matplotlib_inline.backend_inline"):
        for path in paths:
            print(f"running {path.name} …", flush=True)
            started = time.time()
            seconds = execute(path, out / "notebooks" / path.name, parameters)
            check_really_ran(out / "notebooks" / path.name, out / "metrics" / f"{path.stem}.json", started,
                             seconds, expected_seconds.get(path.stem))
            timings[path.stem] = round(seconds, 1)
            print(f"  done in {seconds:.1f} s", flush=True)
    write_json(out / "timings.json", timings)
    metrics = summarise(out)
    print(f"executed notebooks, figures and metrics are in {out}; summary: {out / 'summary.md'}")
    return metrics


def strip_run_metadata(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove what changes from run to run without changing the content: papermill's and nbclient's
    timings, and papermill's per-cell status."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    return nb


def regenerate(only: list[str] | None = None, folder: Path = NOTEBOOKS, scratch: Path | None = None) -> None:
    """Re-execute notebooks at their default parameters and write commit-ready outputs back into
    ``folder``, their metrics into ``notebooks/metrics.json``, the tables of README.md and
    docs/results.md, and README's figures into docs/figures/.

    This is the only way committed outputs are made. ``CI=1`` keeps progress bars out of them, exactly
    as under the test suite's nbval run.
    """
    scratch = Path(scratch or REPO / "build" / "regenerate").resolve()
    with patch.dict(os.environ, CI="1", METAGEN_RESULTS=str(scratch / "results")):
        for path in notebook_paths(folder, only):
            print(f"regenerating {path.name} …", flush=True)
            executed = scratch / path.name
            (scratch / "results" / "metrics" / f"{path.stem}.json").unlink(missing_ok=True)  # no stale numbers
            seconds = execute(path, executed)
            nb = strip_run_metadata(nbformat.read(executed, as_version=4))
            write_atomic(path, lambda tmp: nbformat.write(nb, str(tmp)))
            update_committed(path, scratch / "results", seconds)
            update_figures(scratch / "results" / "figures", path.stem)
            print(f"  {seconds:.1f} s", flush=True)
    update_readme()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metagen_utils.kit.harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="execute the notebook series (the main job)")
    run_p.add_argument("--out", default=str(REPO / "results"), help="output folder (default: results/)")
    run_p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="set a notebook parameter, as with papermill (e.g. -p PROFILE full)")
    run_p.add_argument("--only", nargs="+", help="run only notebooks whose names start with these (e.g. 01)")
    regen_p = sub.add_parser("regenerate", help="re-execute notebooks and write their outputs back")
    regen_p.add_argument("--only", nargs="+")
    sub.add_parser("parameters", help="list each notebook's parameters and defaults")
    args = parser.parse_args(argv)
    pin_cpu_kernels()   # the notebook kernels started below inherit it: the committed numbers' kernels
    try:
        if args.command == "run":
            params = {name: parse_value(value) for name, value in args.parameter}
            run(Path(args.out), params, args.only)
        elif args.command == "regenerate":
            regenerate(args.only)
        else:
            print(json.dumps({p.name: notebook_parameters(p) for p in notebook_paths()}, indent=1))
    except (ConfigError, NotebookError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
