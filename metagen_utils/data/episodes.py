"""Episodic K-shot tasks: the unit of meta-learning.

A task is drawn from one split: ``n_way`` classes, each with ``k_shot`` *support* images (what the
learner adapts on) and ``n_query`` *query* images (what the adapted learner is judged on). Support and
query never share an image. For generation, ``n_way = 1``: K images of a class in, new images out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .images import ImageSet
from ..errors import ConfigError, DataError


@dataclass(frozen=True)
class Episode:
    """A batch of tasks.

    support: ``[tasks, n_way * k_shot, C, H, W]`` (for ``n_way = 1`` that is ``[tasks, K, C, H, W]``)
    query: ``[tasks, n_way * n_query, C, H, W]``
    support_labels, query_labels: ``[tasks, n_way * k]``, the class's position 0..n_way-1 in its task
    classes: ``[tasks, n_way]``, class ids of the image set the episode came from
    support_index, query_index: ``[tasks, n_way * k]``, row numbers of the images in that set
    """

    support: torch.Tensor
    query: torch.Tensor
    support_labels: torch.Tensor
    query_labels: torch.Tensor
    classes: torch.Tensor
    support_index: torch.Tensor
    query_index: torch.Tensor

    @property
    def num_tasks(self) -> int:
        return self.support.shape[0]

    def to(self, device: str | torch.device) -> "Episode":
        """The same episode with every tensor on ``device``."""
        return Episode(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def require_images_per_class(images: ImageSet, needed: int, purpose: str) -> None:
    """DataError naming every class with fewer than ``needed`` images, e.g. ``needed = k_shot + n_query``.

    ``purpose`` says what the images are for, e.g. "5-shot support + 15 query images".
    """
    if not isinstance(needed, (int, np.integer)) or needed < 1:
        raise ConfigError(f"needed={needed!r} is not valid; expected a positive integer")
    counts = images.class_counts()
    short = [(images.classes[i], int(counts[i])) for i in np.flatnonzero(counts < needed)]
    if short:
        listed = "; ".join(f"class {name!r} has {n}" for name, n in short[:5])
        more = f"; and {len(short) - 5} more" if len(short) > 5 else ""
        raise DataError(f"{images.name}: {len(short)} class(es) have fewer images than the {needed} "
                        f"requested for {purpose}: {listed}{more}")


class EpisodeSampler:
    """Draws episodes from one image set, deterministically from ``seed``.

    >>> sampler = EpisodeSampler(glyphs.split("background"), k_shot=5, n_query=5, seed=0)
    >>> episode = sampler.sample(16)        # episode.support: [16, 5, 1, 28, 28]
    """

    def __init__(self, images: ImageSet, k_shot: int, n_query: int, n_way: int = 1, seed: int = 0):
        for name, value, least in (("k_shot", k_shot, 1), ("n_query", n_query, 0), ("n_way", n_way, 1)):
            if not isinstance(value, (int, np.integer)) or value < least:
                raise ConfigError(f"{name}={value!r} is not valid; expected an integer ≥ {least}")
        if n_way > images.num_classes:
            raise DataError(f"n_way={n_way} but {images.name} has only {images.num_classes} classes")
        require_images_per_class(images, k_shot + n_query, f"k_shot={k_shot} + n_query={n_query}")
        self.images = images
        self.k_shot, self.n_query, self.n_way = k_shot, n_query, n_way
        self.rng = np.random.default_rng(seed)
        self._pixels = np.ascontiguousarray(images.images)
        # Rows of each class, padded to a rectangle so a whole batch is drawn with array operations.
        counts = images.class_counts()
        order = np.argsort(images.labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._counts = counts
        self._rows = np.full((images.num_classes, counts.max()), -1, dtype=np.int64)
        for c in range(images.num_classes):
            self._rows[c, :counts[c]] = order[starts[c]:starts[c] + counts[c]]

    def sample(self, num_tasks: int) -> Episode:
        """The next ``num_tasks`` tasks from this sampler's random stream."""
        if num_tasks < 1:
            raise ConfigError(f"num_tasks={num_tasks} is not valid; expected an integer ≥ 1")
        n, per = self.n_way, self.k_shot + self.n_query
        # n_way distinct classes per task: the n smallest of uniform keys (argpartition is O(classes)).
        keys = self.rng.random((num_tasks, self.images.num_classes))
        classes = np.argpartition(keys, n - 1, axis=1)[:, :n] if n < keys.shape[1] else np.argsort(keys, axis=1)
        # Within each class, `per` distinct images: random keys, padding slots pushed to the end.
        keys = self.rng.random((num_tasks, n, self._rows.shape[1]))
        keys[self._rows[classes] < 0] = np.inf
        picks = np.take_along_axis(self._rows[classes], np.argsort(keys, axis=2)[:, :, :per], axis=2)
        support_index = picks[:, :, :self.k_shot].reshape(num_tasks, -1)
        query_index = picks[:, :, self.k_shot:].reshape(num_tasks, -1)
        way = np.arange(n)
        to_t = torch.from_numpy
        return Episode(
            # NumPy's take is several times faster than torch's advanced indexing for this gather.
            support=to_t(np.take(self._pixels, support_index, axis=0)),
            query=to_t(np.take(self._pixels, query_index, axis=0)),
            support_labels=to_t(np.repeat(way, self.k_shot)[None].repeat(num_tasks, 0)),
            query_labels=to_t(np.repeat(way, self.n_query)[None].repeat(num_tasks, 0)),
            classes=to_t(classes),
            support_index=to_t(support_index),
            query_index=to_t(query_index),
        )
