"""A notebook's parameters resolved: profile, seed, device and data.

Every notebook starts from a ``parameters`` cell of literals (``PROFILE = "cpu"``, ``SEED = 0``, …) and
calls :func:`resolve` in the next cell. ``cpu`` is the default, sized for 2 CPU cores; ``full`` is the
full-scale profile (a GPU if there is one, else a long CPU run).
"""
from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError
from .kernels import kernel_mismatch
from .profiles import PROFILES

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class DataConfig:
    """Which data set and at what size: ``source`` is "glyphs" or a local folder path."""

    source: str = "glyphs"
    image_size: int = 28


@dataclass(frozen=True)
class Config:
    """A resolved configuration: the profile plus everything a notebook's parameters changed."""

    profile: str
    seed: int
    device: str
    data: DataConfig = field(default_factory=DataConfig)

    def describe(self) -> str:
        """One line per setting, for printing once at the top of a notebook."""
        lines = [f"profile = {self.profile}", f"seed = {self.seed}", f"device = {self.device}"]
        lines += [f"data.{k} = {v}" for k, v in vars(self.data).items()]
        return "\n".join(lines)


def check_choice(name: str, value: object, choices: tuple) -> None:
    """Raise ConfigError naming the parameter and its valid values unless ``value`` is one of them."""
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; expected one of {', '.join(map(repr, choices))}")


def pick_device(requested: str = "auto") -> str:
    """``auto`` → cuda, then mps, then cpu; an explicit device that is absent is an error, not a fallback."""
    check_choice("DEVICE", requested, DEVICES)
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": has_mps}
    if requested == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available[requested]:
        raise ConfigError(f"DEVICE={requested!r} was asked for but is not available on this machine")
    return requested


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that one seed gives the same run on CPU."""
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"SEED={seed!r} is not valid; expected a non-negative integer")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve(profile: str = "cpu", seed: int = 0, device: str = "auto", data: str | None = None,
            image_size: int | None = None) -> Config:
    """Resolve a notebook's parameters into a :class:`Config` and seed everything.

    ``data`` is None for the embedded glyph set or the path of a local folder (Omniglot layout or one
    folder per class). ``image_size`` overrides the profile's.
    """
    check_choice("PROFILE", profile, PROFILES)
    data_cfg = DataConfig()
    if data is not None:
        if not Path(data).is_dir():
            raise ConfigError(f"DATA={data!r} is not a folder; give the root of an Omniglot-layout or "
                              "class-per-folder data set, or None for the embedded glyphs")
        data_cfg = replace(data_cfg, source=str(data))
    if image_size is not None:
        if image_size not in (28, 32, 64):
            raise ConfigError(f"IMAGE_SIZE={image_size!r} is not valid; expected one of 28, 32, 64")
        data_cfg = replace(data_cfg, image_size=image_size)
    seed_everything(seed)
    problem = kernel_mismatch(torch.backends.cpu.get_cpu_capability(), os.environ.get("ATEN_CPU_CAPABILITY", ""))
    if problem:
        warnings.warn(problem, stacklevel=2)
    return Config(profile=profile, seed=seed, device=pick_device(device), data=data_cfg)


def progress_disabled() -> bool:
    """Progress bars go quiet under CI (the ``CI`` environment variable) so logs and outputs stay stable."""
    # Not tqdm's own TQDM_DISABLE: in a notebook, tqdm.auto gives tqdm.notebook, whose constructor sets
    # disable=bool(kwargs.get("disable", False)) and so overrides the variable (tqdm 4.70); each bar
    # passes disable= explicitly instead.
    return bool(os.environ.get("CI"))
