"""Trained weights committed to the kit (``data/weights/``): does a run reproduce them, and making a run's
weights the committed ones.

Notebooks 04 and 05 each save their trained weights with every run, as a checkpoint folder of
:mod:`metagen_utils.training.checkpoint`; their full-profile weights are committed, so that the cpu run
in CI can re-score them. Each notebook's module (:mod:`metagen_utils.generation.pretrained`,
:mod:`metagen_utils.inference.pretrained`) knows its own tensors; comparing two sets of weights and the
``check`` / ``install`` command are the same for both, and live here.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from .checkpoint import copy_checkpoint
from ..errors import CheckpointError


class Weights(Protocol):
    """What :func:`differences` and :func:`command` need of a loaded set of weights."""

    path: Path

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor, by the name it is stored under."""


def differences(candidate: Weights, reference: Weights) -> dict[str, float]:
    """``{tensor: max |Δ|}`` for every tensor that differs (empty: identical); a tensor present in only
    one of them, or of another shape, counts as infinitely different."""
    a, b = candidate.tensors(), reference.tensors()
    out = {}
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b or a[key].shape != b[key].shape:
            out[key] = float("inf")
        elif not torch.equal(a[key], b[key]):
            out[key] = (a[key].double() - b[key].double()).abs().max().item()
    return out


def describe_match(candidate: Weights, reference: Weights) -> str:
    """One line (or a few) saying whether ``candidate`` reproduces ``reference``."""
    diff = differences(candidate, reference)
    if not diff:
        return f"{candidate.path} matches {reference.path}: every tensor is identical"
    worst = sorted(diff.items(), key=lambda item: -item[1])[:5]
    return (f"{candidate.path} differs from {reference.path} in {len(diff)} tensors; largest |Δ|: "
            + ", ".join(f"{name} {value:.3g}" for name, value in worst))


def command(argv: list[str] | None, prog: str, description: str, committed: Path,
            load: Callable[[Path], Weights]) -> int:
    """``check FOLDER`` (exit 0: FOLDER reproduces ``committed`` bit for bit; 1: it differs; 2: either
    cannot be loaded) and ``install FOLDER`` (make FOLDER the committed weights)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="does a run's weights folder match the committed weights?")
    check.add_argument("folder", type=Path)
    install = sub.add_parser("install", help="make a run's weights folder the committed weights")
    install.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        candidate = load(args.folder)
        if args.command == "install":
            copy_checkpoint(args.folder, committed)
            print(f"installed {args.folder} as {committed}")
            return 0
        reference = load(committed)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe_match(candidate, reference))
    return 0 if not differences(candidate, reference) else 1

