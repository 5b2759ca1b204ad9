"""The kit's one learning-rate schedule: a linear warm-up, then a cosine down to zero.

Every optimiser in the kit that warms up uses it: the outer loop of meta-training
(:mod:`metagen_utils.training.loop`), the joint VAE and its class contexts
(:mod:`metagen_utils.generation.vae`) and the glyph classifier (:mod:`metagen_utils.generation.classifier`).
The warm-up keeps Adam's first steps, whose moment estimates rest on one or two gradients, from
throwing the weights far from their start.
"""
from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, steps: int, warmup: int) -> float:
    """The fraction of the peak rate for update number ``step`` (1-based) of ``steps``.

    ``step / warmup`` for the first ``warmup`` updates, then ½ (1 + cos πp) with p = (step − 1 − warmup)
    / (steps − warmup) going from 0 up: the last update still moves the parameters, and p stops at 1
    (fraction 0) for any step past the end.

    >>> [round(warmup_cosine(s, 6, 2), 3) for s in range(1, 7)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """
    if step <= warmup:
        return step / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - 1 - warmup) / max(1, steps - warmup))))


def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`warmup_cosine` as a scheduler for ``optimizer``: call ``.step()`` after each of its ``steps``
    updates, and update number s runs at (the group's rate) × ``warmup_cosine(s, steps, warmup)``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: warmup_cosine(done + 1, steps, warmup))
