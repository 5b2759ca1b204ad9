"""Image sets: one container for every data source (glyphs, Omniglot folders, class folders).

A data set is a flat array of images with a class label each; classes belong to an "alphabet" (a
script for glyphs and Omniglot, the folder root for class folders) and every class to one split.
Splits are by alphabet, as in Omniglot: a model meta-trained on ``background`` never sees a
class, nor even a script, of ``evaluation``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError

SPLITS = ("background", "validation", "evaluation")


@dataclass(frozen=True)
class ImageSet:
    """Images with class labels, their classes' alphabets and splits.

    images: float32 ``[N, C, H, W]`` in [0, 1] (0 = background, 1 = stroke for glyphs/Omniglot).
    labels: int64 ``[N]``, index into ``classes``.
    classes, alphabets, splits: one entry per class.
    files: one source path per image where images came from disk (empty for generated sets).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    alphabets: tuple[str, ...]
    splits: tuple[str, ...]
    name: str = "images"
    files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DataError(f"{self.name}: images must be [N, C, H, W], got shape {self.images.shape}")
        if len(self.labels) != len(self.images):
            raise DataError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        if not (len(self.classes) == len(self.alphabets) == len(self.splits)):
            raise DataError(f"{self.name}: classes, alphabets and splits must have one entry per class")
        bad = sorted(set(self.splits) - set(SPLITS))
        if bad:
            raise DataError(f"{self.name}: unknown split(s) {bad}; expected one of {SPLITS}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def class_counts(self) -> np.ndarray:
        """Number of images of each class, ``[num_classes]``."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def split(self, name: str) -> "ImageSet":
        """The classes of one split (labels renumbered from 0), e.g. ``glyphs.split("evaluation")``."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected one of {SPLITS}")
        keep = [i for i, s in enumerate(self.splits) if s == name]
        if not keep:
            raise DataError(f"{self.name}: no class is in split {name!r}")
        return self.select_classes(keep)

    def select_classes(self, class_ids: list[int]) -> "ImageSet":
        """A new set holding only ``class_ids`` (in that order), labels renumbered 0..len-1."""
        remap = np.full(self.num_classes, -1, dtype=np.int64)
        remap[np.asarray(class_ids, dtype=np.int64)] = np.arange(len(class_ids))
        mask = remap[self.labels] >= 0
        files = tuple(f for f, m in zip(self.files, mask) if m) if self.files else ()
        return ImageSet(
            images=self.images[mask],
            labels=remap[self.labels[mask]],
            classes=tuple(self.classes[i] for i in class_ids),
            alphabets=tuple(self.alphabets[i] for i in class_ids),
            splits=tuple(self.splits[i] for i in class_ids),
            name=self.name,
            files=files,
        )

    def alphabet_names(self) -> list[str]:
        """Alphabets in first-seen order."""
        return list(dict.fromkeys(self.alphabets))

