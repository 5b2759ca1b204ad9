"""Notebook 04's trained weights, saved with every run and, for the full profile, committed to the kit.

The full profile trains for about 18 minutes on two cores, too long for every CI run. Its weights are
committed in ``data/weights/04_meta_vae_full/`` as a checkpoint folder of :mod:`metagen_utils.training.checkpoint`
(tensors in safetensors, settings and the run's metrics in JSON, the sha256 of every file in
``manifest.json``), so that notebook 04 can show full-scale samples and re-score them in CI while it
still trains its short cpu-profile model in front of the reader. Loading verifies every hash and never
unpickles anything.

Retraining them is one command (``make weights``: notebook 04 at ``PROFILE=full``, then
``python -m metagen_utils.generation.pretrained check`` on the run's weights). One seed gives the same weights
run after run on a CPU, so on a machine like the one that made them a retrain matches bit for bit;
``check`` says whether it does and, if not, by how much each tensor differs (another CPU's vector
instructions may round differently). ``install`` makes a run's weights the
committed ones.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from . import meta_vae
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.committed import command, describe_match, differences  # noqa: F401  (notebook 04 calls them here)
from ..errors import CheckpointError
from .vae import ConditionalVAE, Params
from ..meta.maml import MetaConfig
from ..results import REPO, results_dir

COMMITTED = REPO / "data" / "weights" / "04_meta_vae_full"
GROUPS = ("meta", "joint", "spread")   # weights are stored as "<group>.<name>"
SPREAD = ("within", "posterior_var")


@dataclass(frozen=True)
class TrainedWeights:
    """Notebook 04's trained model: ``meta`` (meta-parameters and learned rates), ``joint`` (the
    class-agnostic VAE the baselines start from), ``spread`` (the support-fitted Gaussian's pooled
    variances), ``settings`` (what built and trained them) and ``metrics`` (what their run measured)."""

    path: Path
    meta: Params
    joint: Params
    spread: tuple[Tensor, Tensor]
    settings: dict
    metrics: dict

    def model(self, device: str | torch.device = "cpu") -> ConditionalVAE:
        """An empty module of the right shape, to call with ``meta`` or ``joint``."""
        s = self.settings
        return ConditionalVAE(s["latent_dim"], s["context_dim"], s["width"], s["blocks"]).to(device)

    def meta_config(self) -> MetaConfig:
        """The adaptation the weights were meta-trained for (Meta-SGD, as in notebook 04 and the CLI)."""
        return meta_vae.meta_config(self.settings)

    def spread_dict(self) -> dict[str, Tensor]:
        """``spread`` by name, as stored."""
        return dict(zip(SPREAD, self.spread))

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor, as stored: ``"<group>.<name>"``."""
        return {f"{group}.{name}": tensor for group, named in
                (("meta", self.meta), ("joint", self.joint), ("spread", self.spread_dict()))
                for name, tensor in named.items()}

    def test_steps(self) -> dict[int, int]:
        """Inner steps at test time per K (JSON keys are strings)."""
        return {int(k): int(v) for k, v in self.settings["test_steps"].items()}


def run_folder(profile: str) -> Path:
    """Where a notebook 04 run at ``profile`` saves its weights: inside the run's output folder."""
    return results_dir() / "weights" / f"04_meta_vae_{profile}"


def save(folder: str | Path, meta: Mapping[str, Tensor], joint: Mapping[str, Tensor],
         spread: tuple[Tensor, Tensor], settings: Mapping, metrics: Mapping | None = None) -> Path:
    """Write the weights as a checkpoint folder (atomically, with sha256 manifest) and return its path.
    ``settings`` needs latent_dim, context_dim, width, blocks, inner_steps, inner_lr, adapt and
    test_steps (``{K: steps}``)."""
    missing = [key for key in ("latent_dim", "context_dim", "width", "blocks", "inner_steps", "inner_lr",
                               "adapt", "test_steps") if key not in settings]
    if missing:
        raise CheckpointError(f"{folder}: settings lack {missing}; the weights could not be rebuilt without them")
    # Copies: the two sets may share storage (meta-training starts from the joint VAE's tensors), and
    # safetensors refuses to write shared tensors.
    tensors = {**{f"meta.{n}": t.detach().clone() for n, t in meta.items()},
               **{f"joint.{n}": t.detach().clone() for n, t in joint.items()},
               **{f"spread.{n}": t.detach().clone() for n, t in zip(SPREAD, spread)}}
    settings = {**settings, "test_steps": {str(k): v for k, v in dict(settings["test_steps"]).items()}}
    return save_checkpoint(folder, tensors, step=0, config=settings,
                           extra={"metrics": {str(k): float(v) for k, v in (metrics or {}).items()}}, rng=False)


def load(folder: str | Path = COMMITTED) -> TrainedWeights:
    """Verify every file of ``folder`` against its manifest and load it (on the CPU)."""
    checkpoint = load_checkpoint(folder)
    groups: dict[str, dict[str, Tensor]] = {g: {} for g in GROUPS}
    for key, tensor in checkpoint.weights.items():
        group, _, name = key.partition(".")
        if group not in groups:
            raise CheckpointError(f"{checkpoint.path}: tensor {key!r} is none of {', '.join(GROUPS)}")
        groups[group][name] = tensor
    if set(groups["spread"]) != set(SPREAD):
        raise CheckpointError(f"{checkpoint.path}: expected spread.within and spread.posterior_var")
    return TrainedWeights(checkpoint.path, groups["meta"], groups["joint"],
                          tuple(groups["spread"][n] for n in SPREAD),
                          checkpoint.config, dict(checkpoint.extra.get("metrics", {})))


def main(argv: list[str] | None = None) -> int:
    return command(argv, "python -m metagen_utils.generation.pretrained", __doc__.split("\n")[0], COMMITTED, load)


if __name__ == "__main__":
    sys.exit(main())
