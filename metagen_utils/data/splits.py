"""Choosing which classes a run holds out: the validation and evaluation splits of any image set.

The embedded glyphs and a downloaded Omniglot come with their splits. A folder of one's own usually
does not (a class-per-folder set is all background), and then nothing would be unseen to evaluate on.
:func:`hold_out` chooses the held-out classes, by name or by count, with a seeded default, and keeps
the split *by alphabet* wherever the set has enough alphabets, so that held-out scripts stay unseen.

    images = hold_out(load_folder("my_glyphs"), evaluation=["Lao"], seed=0)
    images.split("evaluation").alphabet_names()          # ['Lao']
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, DataError
from .images import ImageSet

# The share of the background that a default carves out, for a set without a split of its own.
DEFAULT_SHARE = {"validation": 0.1, "evaluation": 0.2}

Request = int | Sequence[str] | None


def hold_out(images: ImageSet, validation: Request = None, evaluation: Request = None,
             seed: int = 0) -> ImageSet:
    """``images`` with its validation and evaluation classes chosen; every other class is background.

    Each of ``validation`` and ``evaluation`` is one of:

    * None: the set's own split if it has one; otherwise a seeded default carved from the background,
      10 % (validation) or 20 % (evaluation) of its alphabets, or of its classes when it has too few
      alphabets to leave one in the background (at least one each; shares of the background before
      anything is carved from it);
    * a count: that many alphabets carved from the background at random (seeded), or that many classes
      when the background has no more alphabets than that;
    * names: exactly those alphabets or classes (names of either kind may be mixed).

    An explicit choice first returns the set's own classes of that split to the background. Raises
    :class:`DataError` naming the set, what it has and what the request needs.
    """
    splits = list(images.splits)
    requests = {"validation": validation, "evaluation": evaluation}
    for name, request in requests.items():
        _check_request(name, request)
        if request is not None:
            splits = ["background" if s == name else s for s in splits]
    for name, request in requests.items():
        if request is not None and not isinstance(request, int):
            for index in _classes_named(images, request, name):
                if splits[index] != "background":
                    raise DataError(f"{images.name}: {name}={list(request)!r} names class "
                                    f"{images.classes[index]!r}, which is already held out as {splits[index]}")
                splits[index] = name
    rng = np.random.default_rng(seed)
    start = [i for i, s in enumerate(splits) if s == "background"]    # defaults are shares of this
    for name, request in requests.items():
        if request is None and name in splits or request is not None and not isinstance(request, int):
            continue
        pool = [i for i, s in enumerate(splits) if s == "background"]
        for index in _carve(images, pool, start, request, name, rng):
            splits[index] = name
    return ImageSet(images.images, images.labels, images.classes, images.alphabets, tuple(splits),
                    images.name, images.files)


def held_out_summary(images: ImageSet) -> str:
    """One line per split: its number of classes and images and its alphabets, for a notebook to print."""
    lines = []
    for name in ("background", "validation", "evaluation"):
        if name in images.splits:
            part = images.split(name)
            lines.append(f"{name:<11} {part.num_classes:>5} classes {len(part.images):>6} images  "
                         f"{', '.join(part.alphabet_names())}")
    return "\n".join(lines)


def _check_request(name: str, request: Request) -> None:
    if request is None:
        return
    if isinstance(request, bool) or isinstance(request, int) and request < 1:
        raise ConfigError(f"{name}={request!r}; expected a number of alphabets or classes ≥ 1, a list of "
                          "their names, or None for the set's own split")
    if not isinstance(request, int) and (isinstance(request, str) or not request
                                         or not all(isinstance(n, str) for n in request)):
        raise ConfigError(f"{name}={request!r}; expected a non-empty list of alphabet or class names "
                          "(e.g. ['Lao']), a number, or None")


def _classes_named(images: ImageSet, names: Sequence[str], split: str) -> list[int]:
    found = []
    for wanted in names:
        ids = [i for i, (c, a) in enumerate(zip(images.classes, images.alphabets)) if wanted in (c, a)]
        if not ids:
            raise DataError(f"{images.name}: {split} names {wanted!r}, which is neither an alphabet nor a class "
                            f"of it; its alphabets are {images.alphabet_names()} ({images.num_classes} classes)")
        found += ids
    return found


def _carve(images: ImageSet, pool: list[int], start: list[int], count: int | None, split: str,
           rng: np.random.Generator) -> list[int]:
    """Class indices of ``pool`` (the background classes left) to hold out as ``split``: whole alphabets
    where the pool has enough of them, else single classes; ``count`` None means the default share of
    ``start`` (the background before anything was carved from it)."""
    alphabets = list(dict.fromkeys(images.alphabets[i] for i in pool))
    share = DEFAULT_SHARE[split]
    want = count if count is not None else max(1, int(round(share * len({images.alphabets[i] for i in start}))))
    if len(alphabets) > want:
        chosen = set(rng.permutation(alphabets)[:want].tolist())
        return [i for i in pool if images.alphabets[i] in chosen]
    want = count if count is not None else max(1, int(round(share * len(start))))
    if len(pool) <= want:
        raise DataError(f"{images.name}: {images.num_classes} classes, {len(pool)} of them left in the "
                        f"background ({len(alphabets)} alphabet(s)); holding out {want} {split} class(es) "
                        f"needs at least {want + 1} there, so that one stays in the background")
    return sorted(rng.permutation(pool)[:want].tolist())
