"""Checkpoints in safe formats only: tensors in safetensors, everything else in JSON.

A checkpoint is a folder (``step_000123/``, ``latest/``, ``best/``) holding

* ``weights.safetensors`` — the meta-parameters, ``name → tensor``;
* ``state.safetensors`` — the optimizer's per-parameter tensors under ``optim.<param name>.<key>``
  (AdamW: ``exp_avg``, ``exp_avg_sq``, ``step``) and the torch RNG states under ``rng.torch`` /
  ``rng.cuda.<i>`` (uint8);
* ``state.json`` — the step, the run's configuration, the optimizer's hyper-parameters, the NumPy and
  Python RNG states and whatever the training loop adds (loss history, best validation loss);
* ``manifest.json`` — the sha256 and size of each of those three files.

Nothing is ever unpickled: ``torch.load`` on a checkpoint found on the internet runs arbitrary code,
safetensors and JSON cannot. A folder is written under a hidden temporary name and renamed into place,
so an interrupted write leaves the previous checkpoint, never half a new one. Loading checks every
file against the manifest first, so a truncated or altered file is a :class:`CheckpointError` that
names it, not a confusing error (or silently wrong weights) later.

One module of about 350 lines: writing, verifying and restoring share the manifest format and its
checks, which must stay in step.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..errors import CheckpointError

WEIGHTS, STATE_TENSORS, STATE_JSON, MANIFEST = ("weights.safetensors", "state.safetensors", "state.json",
                                                 "manifest.json")
FORMAT = "metagen-checkpoint/1"
OPTIM, RNG_TORCH, RNG_CUDA = "optim.", "rng.torch", "rng.cuda."


@dataclass(frozen=True)
class Checkpoint:
    """A loaded, verified checkpoint.

    weights: ``name → tensor`` on the CPU. optimizer: ``{"param_groups": [...], "state": {name: {key:
    value}}}``, a torch optimizer state dict keyed by parameter name instead of position (None if none
    was saved). rng: ``{"torch": uint8 tensor, "cuda": [uint8 tensors], "numpy": dict, "python": list}``.
    """

    path: Path
    step: int
    weights: dict[str, Tensor]
    config: dict
    extra: dict = field(default_factory=dict)
    optimizer: dict | None = None
    rng: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- RNG
def capture_rng() -> tuple[dict[str, Tensor], dict]:
    """The torch (CPU and CUDA), NumPy-global and Python ``random`` states: (tensors, JSON-able dict)."""
    tensors = {RNG_TORCH: torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors.update({f"{RNG_CUDA}{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    np_state = np.random.get_state(legacy=False)
    np_state = {**np_state, "state": {**np_state["state"], "key": np_state["state"]["key"].tolist()}}
    version, internal, gauss = random.getstate()
    return tensors, {"numpy": np_state, "python": [version, list(internal), gauss]}


def restore_rng(rng: Mapping) -> None:
    """Set the global RNGs to states from :attr:`Checkpoint.rng` (CUDA only where it is available)."""
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if "numpy" in rng:
        state = rng["numpy"]
        np.random.set_state({**state, "state": {**state["state"],
                                                "key": np.asarray(state["state"]["key"], dtype=np.uint32)}})
    if "python" in rng:
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))


# -------------------------------------------------------------------------------------------- writing
def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_json(path: Path, obj: object) -> None:
    # allow_nan=False: a NaN in a checkpoint's state would only surface, confusingly, after loading.
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n")


def _write_manifest(folder: Path) -> None:
    files = {name: {"sha256": _sha256(folder / name), "bytes": (folder / name).stat().st_size}
             for name in (WEIGHTS, STATE_TENSORS, STATE_JSON)}
    _write_json(folder / MANIFEST, {"format": FORMAT, "files": files})


def write_folder_atomic(folder: str | Path, fill: Callable[[Path], None]) -> Path:
    """Call ``fill(tmp)`` on an empty hidden folder beside ``folder``, then rename it to ``folder``.

    An existing ``folder`` is moved aside first and deleted only once the new one is in place (a folder
    cannot be renamed over a non-empty one), so at every moment there is the old checkpoint or the new
    one, never a partial one; if ``fill`` raises, nothing at ``folder`` changes.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        fill(tmp)
        moved = folder.exists()
        if moved:
            os.replace(folder, old)
        try:
            os.replace(tmp, folder)
        except BaseException:
            if moved:
                os.replace(old, folder)
            raise
        if moved:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _optimizer_to_safe(optimizer: torch.optim.Optimizer, weights: Mapping[str, Tensor]
                       ) -> tuple[dict[str, Tensor], dict]:
    """The optimizer's state dict split into tensors (``optim.<name>.<key>``) and JSON, by parameter name.

    torch numbers parameters by position; names keep the checkpoint readable and make a model whose
    parameters changed a clear mismatch instead of state silently applied to the wrong tensor."""
    name_of = {id(t): n for n, t in weights.items()}
    names = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in name_of:
                raise CheckpointError(f"the optimizer holds a parameter of shape {tuple(p.shape)} that is not "
                                      "among the weights being saved; save the dict the optimizer was built on")
            names.append(name_of[id(p)])
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, Tensor):
                tensors[f"{OPTIM}{names[index]}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(names[index], {})[key] = value
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def save_checkpoint(folder: str | Path, weights: Mapping[str, Tensor], *, step: int, config: Mapping,
                    optimizer: torch.optim.Optimizer | None = None, extra: Mapping | None = None,
                    rng: bool = True) -> Path:
    """Write a checkpoint folder atomically and return its path.

    weights: ``name → tensor`` (any device; saved from the CPU). config: the JSON-able settings that
    produced these weights, compared on resume. extra: more JSON-able state (loss history, best loss).
    rng: also save the current global RNG states (:func:`capture_rng`).
    """
    cpu_weights = {n: t.detach().cpu().contiguous() for n, t in weights.items()}
    tensors, state = {}, {"format": FORMAT, "step": int(step), "config": dict(config),
                          "extra": dict(extra or {}), "optimizer": None, "rng": None}
    if optimizer is not None:
        optim_tensors, state["optimizer"] = _optimizer_to_safe(optimizer, weights)
        tensors.update(optim_tensors)
    if rng:
        rng_tensors, state["rng"] = capture_rng()
        tensors.update(rng_tensors)

    def fill(tmp: Path) -> None:
        save_file(cpu_weights, str(tmp / WEIGHTS), metadata={"format": "pt"})
        save_file(tensors, str(tmp / STATE_TENSORS), metadata={"format": "pt"})
        _write_json(tmp / STATE_JSON, state)
        _write_manifest(tmp)   # last: hashes of the bytes that actually reached the disk

    return write_folder_atomic(folder, fill)


def copy_checkpoint(source: str | Path, folder: str | Path) -> Path:
    """Atomically make ``folder`` a copy of the checkpoint ``source`` (e.g. ``step_000100`` → ``latest``).

    Checkpoint files are never modified in place, so a hard link is a safe, free copy; file systems
    without hard links get a real copy."""
    source = Path(source)
    verify_checkpoint(source)

    def fill(tmp: Path) -> None:
        for name in (WEIGHTS, STATE_TENSORS, STATE_JSON, MANIFEST):
            try:
                os.link(source / name, tmp / name)
            except OSError:
                shutil.copy2(source / name, tmp / name)

    return write_folder_atomic(folder, fill)


# -------------------------------------------------------------------------------------------- loading
def verify_checkpoint(folder: str | Path) -> dict:
    """Check every file against ``manifest.json``; returns the manifest, or raises CheckpointError naming
    the file and what is wrong with it (missing, truncated, altered)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no checkpoint folder here")
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        expected = {name: (files[name]["sha256"], files[name]["bytes"])
                    for name in (WEIGHTS, STATE_TENSORS, STATE_JSON)}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; the checkpoint was not written completely") from None
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: not a valid checkpoint manifest ({type(error).__name__}: {error})") \
            from error
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {manifest.get('format')!r}; expected {FORMAT!r}")
    for name, (sha, size) in expected.items():
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing; the manifest lists it")
        found = file.stat().st_size
        if found != size:
            raise CheckpointError(f"{file}: {found} bytes, the manifest says {size}: the file was "
                                  f"{'truncated' if found < size else 'extended'}")
        if _sha256(file) != sha:
            raise CheckpointError(f"{file}: sha256 does not match the manifest: the contents were altered or "
                                  "damaged since the checkpoint was written")
    return manifest


def _load_tensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error


def load_checkpoint(folder: str | Path) -> Checkpoint:
    """Verify and load a checkpoint folder (tensors on the CPU). Never unpickles anything."""
    folder = Path(folder)
    verify_checkpoint(folder)
    weights = _load_tensors(folder / WEIGHTS)
    tensors = _load_tensors(folder / STATE_TENSORS)
    path = folder / STATE_JSON
    try:
        state = json.loads(path.read_text())
        step, config, optimizer = int(state["step"]), dict(state["config"]), None
        if state.get("optimizer") is not None:
            per_param: dict[str, dict] = {n: dict(v) for n, v in state["optimizer"]["scalars"].items()}
            for key, value in tensors.items():
                if key.startswith(OPTIM):
                    name, item = key[len(OPTIM):].rsplit(".", 1)
                    per_param.setdefault(name, {})[item] = value
            optimizer = {"param_groups": list(state["optimizer"]["param_groups"]), "state": per_param}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{path}: not a valid checkpoint state ({type(error).__name__}: {error})") \
            from error
    rng = dict(state.get("rng") or {})
    if RNG_TORCH in tensors:
        rng["torch"] = tensors[RNG_TORCH]
    cuda = sorted((k for k in tensors if k.startswith(RNG_CUDA)), key=lambda k: int(k[len(RNG_CUDA):]))
    if cuda:
        rng["cuda"] = [tensors[k] for k in cuda]
    return Checkpoint(folder, step, weights, config, dict(state.get("extra") or {}), optimizer, rng)


def check_weights(checkpoint: Checkpoint, params: Mapping[str, Tensor]) -> None:
    """CheckpointError naming ``weights.safetensors`` unless its names, shapes and dtypes equal ``params``'."""
    path = checkpoint.path / WEIGHTS
    missing = [n for n in params if n not in checkpoint.weights]
    unexpected = [n for n in checkpoint.weights if n not in params]
    if missing or unexpected:
        raise CheckpointError(f"{path}: parameter names do not match the model: missing {missing}, "
                              f"unexpected {unexpected}")
    for name, p in params.items():
        saved = checkpoint.weights[name]
        if saved.shape != p.shape or saved.dtype != p.dtype:
            raise CheckpointError(f"{path}: parameter {name!r} is {tuple(saved.shape)} {saved.dtype} in the "
                                  f"checkpoint, but {tuple(p.shape)} {p.dtype} in the model")


def _flatten(config: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_config(checkpoint: Checkpoint, config: Mapping) -> None:
    """CheckpointError naming ``state.json`` and every setting (``train.outer_lr``, …) that differs from
    ``config``."""
    current = _flatten(json.loads(json.dumps(dict(config))))   # the round trip the saved config went through
    saved = _flatten(checkpoint.config)
    differ = sorted(k for k in set(saved) | set(current) if saved.get(k, "<absent>") != current.get(k, "<absent>"))
    if differ:
        detail = "; ".join(f"{k}: checkpoint {saved.get(k, '<absent>')!r}, now {current.get(k, '<absent>')!r}"
                           for k in differ)
        raise CheckpointError(f"{checkpoint.path / STATE_JSON}: the checkpoint was made with another "
                              f"configuration — {detail}")


def restore(checkpoint: Checkpoint, params: Mapping[str, Tensor],
            optimizer: torch.optim.Optimizer | None = None, rng: bool = True) -> None:
    """Copy the checkpoint's weights into ``params`` in place (same tensors, so an optimizer built on them
    stays valid), load its optimizer state into ``optimizer`` and, with ``rng``, set the global RNGs."""
    check_weights(checkpoint, params)
    if optimizer is not None:
        if checkpoint.optimizer is None:
            raise CheckpointError(f"{checkpoint.path / STATE_JSON}: holds no optimizer state to restore")
        optimizer.load_state_dict(_optimizer_from_safe(checkpoint, optimizer, params))
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(checkpoint.weights[name])
    if rng:
        restore_rng(checkpoint.rng)


def _optimizer_from_safe(checkpoint: Checkpoint, optimizer: torch.optim.Optimizer,
                         params: Mapping[str, Tensor]) -> dict:
    """The name-keyed optimizer state back in torch's positional form for ``optimizer``."""
    name_of = {id(t): n for n, t in params.items()}
    current = [[name_of.get(id(p)) for p in g["params"]] for g in optimizer.param_groups]
    saved_groups = checkpoint.optimizer["param_groups"]
    if [g["params"] for g in saved_groups] != current:
        raise CheckpointError(f"{checkpoint.path / STATE_JSON}: the optimizer was saved over parameters "
                              f"{[g['params'] for g in saved_groups]}, but now optimizes {current}")
    index = {n: i for i, n in enumerate(n for group in current for n in group)}
    groups = []
    for saved, live in zip(saved_groups, optimizer.param_groups):
        # JSON has no tuples; give back the types the optimizer uses (AdamW's betas is a tuple).
        group = {k: tuple(v) if isinstance(live.get(k), tuple) else v for k, v in saved.items()}
        groups.append({**group, "params": [index[n] for n in saved["params"]]})
    state = {index[n]: s for n, s in checkpoint.optimizer["state"].items() if n in index}
    return {"state": state, "param_groups": groups}
