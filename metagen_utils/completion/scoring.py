"""Scoring pixel completion (notebooks 02 and 03): PSNR on the pixels a task never saw, choosing a step size
on validation tasks, and every method scored on the same tasks, so that differences are paired.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from torch import Tensor

from ..errors import ConfigError
from ..stats import format_ci, mean_ci, paired_difference, psnr
from .gaussian import GaussianPrior, conditional_mean
from .tasks import KS, CompletionTasks, complete_by_gd


def psnr_unobserved(predictions: Tensor, tasks: CompletionTasks) -> np.ndarray:
    """PSNR (dB) of each task's unobserved pixels. predictions: ``[..., tasks, D]`` → ``[..., tasks]``."""
    lead = predictions.shape[:-2]
    flat = predictions.reshape(-1, *predictions.shape[-2:])
    mask = ~tasks.observed_mask()
    return np.stack([psnr(p, tasks.pixels, mask) for p in flat]).reshape(*lead, len(tasks))


class Evaluation(NamedTuple):
    """psnr: method → ``[len(ks), tasks]`` for gradient-descent methods, ``[tasks]`` for the conditional
    means; predictions: the completions, same keys, ``[len(ks), tasks, D]`` or ``[tasks, D]``."""

    psnr: dict[str, np.ndarray]
    predictions: dict[str, Tensor]
    ks: tuple[int, ...]


def evaluate_methods(features: Tensor, tasks: CompletionTasks, inits: dict[str, Tensor],
                     lrs: dict[str, float], priors: dict[str, GaussianPrior] | None = None,
                     ks: Sequence[int] = KS, progress: bool = True) -> Evaluation:
    """Every method on the same tasks: k-step GD from each θ₀ in ``inits`` (rate ``lrs[name]``), and the
    conditional mean of each prior in ``priors``. Returns PSNR on the unobserved pixels, per task."""
    missing = sorted(set(inits) - set(lrs))
    if missing:
        raise ConfigError(f"evaluate_methods: no step size in lrs for {missing}; lrs has {sorted(lrs)}")
    predictions: dict[str, Tensor] = {}
    for name, theta0 in inits.items():
        predictions[name] = complete_by_gd(features, tasks, theta0, lrs[name], ks, progress, desc=name)
    for name, prior in (priors or {}).items():
        predictions[name] = conditional_mean(prior, tasks, progress=progress, desc=name)
    return Evaluation({n: psnr_unobserved(p, tasks) for n, p in predictions.items()}, predictions, tuple(ks))


def psnr_table(evaluation: Evaluation, baseline: str | None = None, decimals: int = 2) -> str:
    """Mean ± 95 % CI of PSNR per method (rows) and k (columns); with ``baseline``, also every GD method's
    paired difference to it on the same tasks, with one more decimal since it is far more precise. A method
    without k (a conditional mean) is marked * and shows its one value in every column."""
    ks = evaluation.ks
    width = max(len(n) for n in evaluation.psnr) + len(baseline or "") + 4
    lines = [f"{'PSNR (dB)':<{width}}" + "".join(f"{'k = ' + str(k):>16}" for k in ks)]
    for name, scores in evaluation.psnr.items():
        rows = scores if scores.ndim == 2 else [scores] * len(ks)
        label = name if scores.ndim == 2 else name + " *"
        cells = [format_ci(mean_ci(r), decimals=decimals) for r in rows]
        lines.append(f"{label:<{width}}" + "".join(f"{c:>16}" for c in cells))
    if baseline is not None:
        for name, scores in evaluation.psnr.items():
            if name != baseline and scores.ndim == 2:
                cells = [format_ci(paired_difference(a, b), decimals=decimals + 1)
                         for a, b in zip(scores, evaluation.psnr[baseline])]
                lines.append(f"{name + ' − ' + baseline:<{width}}" + "".join(f"{c:>16}" for c in cells))
    if any(scores.ndim == 1 for scores in evaluation.psnr.values()):
        lines.append("* no gradient steps: the conditional mean given the observed pixels, the same at every k")
    return "\n".join(lines)
