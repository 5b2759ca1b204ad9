"""Notebook 05's trained weights, saved with every run and, for the full profile, committed to the kit.

The full profile trains for about half an hour on two cores, too long for every CI run. Its hybrid's
weights are committed in ``data/weights/05_set_vae_full/`` (a checkpoint folder of
:mod:`metagen_utils.training.checkpoint`: safetensors, JSON, the sha256 of every file in
``manifest.json``), so that the cpu run of notebook 05 re-scores them on every CI run. Only the hybrid
is committed: it is the way the notebook's targets are about, and each way's weights are 5 MB.

Retraining them is ``make weights`` (notebook 05 at ``PROFILE=full``, then ``python -m
metagen_utils.inference.pretrained check`` on the run's weights); ``install`` makes a run's weights the
committed ones. As for notebook 04's weights, one seed gives the same weights run after run on one CPU.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .set_vae import ClassVAE, METHODS
from ..errors import CheckpointError
from ..meta.maml import Params
from ..results import REPO, results_dir
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.committed import command, describe_match, differences  # noqa: F401  (notebook 05 and its tests call them here)

COMMITTED = REPO / "data" / "weights" / "05_set_vae_full"
NEEDED = ("latent_dim", "context_dim", "width", "hidden", "test_steps")


@dataclass(frozen=True)
class TrainedWays:
    """Notebook 05's trained ways: ``ways`` (``{method: meta-parameters}``, methods of
    :data:`metagen_utils.inference.set_vae.METHODS`), ``settings`` (what built and trained them) and
    ``metrics`` (what their run measured)."""

    path: Path
    ways: dict[str, Params]
    settings: dict
    metrics: dict

    def model(self, device: str | torch.device = "cpu") -> ClassVAE:
        """An empty module of the right shape, to call with one of ``ways``."""
        return ClassVAE.from_settings(self.settings).to(device)

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor, as stored: ``"<method>.<name>"``."""
        return {f"{method}.{name}": t for method, params in self.ways.items() for name, t in params.items()}


def run_folder(profile: str) -> Path:
    """Where a notebook 05 run at ``profile`` saves its weights: inside the run's output folder."""
    return results_dir() / "weights" / f"05_set_vae_{profile}"


def save(folder: str | Path, ways: Mapping[str, Params], settings: Mapping,
         metrics: Mapping | None = None) -> Path:
    """Write ``ways`` (``{method: meta-parameters}``) as a checkpoint folder (atomically, with sha256
    manifest) and return its path. ``settings`` needs latent_dim, context_dim, width, hidden and
    test_steps."""
    missing = [key for key in NEEDED if key not in settings]
    unknown = sorted(set(ways) - set(METHODS))
    if missing or unknown or not ways:
        raise CheckpointError(f"{folder}: settings lack {missing}" if missing else
                              f"{folder}: ways {unknown or '{}'}; expected some of {METHODS}")
    tensors = {f"{method}.{name}": t.detach().clone() for method, params in ways.items()
               for name, t in params.items()}
    return save_checkpoint(folder, tensors, step=0, config=dict(settings),
                           extra={"metrics": {str(k): float(v) for k, v in (metrics or {}).items()}}, rng=False)


def load(folder: str | Path = COMMITTED) -> TrainedWays:
    """Verify every file of ``folder`` against its manifest and load it (on the CPU)."""
    checkpoint = load_checkpoint(folder)
    ways: dict[str, Params] = {}
    for key, tensor in checkpoint.weights.items():
        method, _, name = key.partition(".")
        if method not in METHODS:
            raise CheckpointError(f"{checkpoint.path}: tensor {key!r} belongs to none of {', '.join(METHODS)}")
        ways.setdefault(method, {})[name] = tensor
    missing = [key for key in NEEDED if key not in checkpoint.config]
    if missing:
        raise CheckpointError(f"{checkpoint.path}: settings lack {missing}")
    return TrainedWays(checkpoint.path, ways, checkpoint.config, dict(checkpoint.extra.get("metrics", {})))


def main(argv: list[str] | None = None) -> int:
    return command(argv, "python -m metagen_utils.inference.pretrained", __doc__.split("\n")[0], COMMITTED, load)


if __name__ == "__main__":
    sys.exit(main())
