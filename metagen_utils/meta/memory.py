"""What a meta-gradient holds in memory for its backward pass (notebook 03, "What second order costs").

Autograd saves tensors during the forward pass for use in backward, and frees them with the graph that
holds them. :func:`held_for_backward` watches that through ``torch.autograd.graph.saved_tensors_hooks``:
each saved tensor's storage is counted while some graph still holds it, so the result is the *peak* of
bytes held at once, not the sum of everything ever saved (which, for first-order MAML, counts each inner
step's graph although it is freed before the next step). Storage shared by several saved tensors (a
parameter used at every step, a view) counts once, and the tensors passed as ``exclude`` (the data and the
parameters, which exist whether or not a graph holds them) do not count.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class _Held:
    """The live storages and their bytes; ``peak`` is the largest total seen."""

    counts: dict[int, int] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)
    live: int = 0
    peak: int = 0
    total: int = 0

    def add(self, key: int, size: int, saved_bytes: int) -> None:
        self.total += saved_bytes
        if self.counts.get(key, 0) == 0:
            self.sizes[key] = size
            self.live += size
            self.peak = max(self.peak, self.live)
        self.counts[key] = self.counts.get(key, 0) + 1

    def release(self, key: int) -> None:
        self.counts[key] -= 1
        if self.counts[key] == 0:
            self.live -= self.sizes.pop(key)
            del self.counts[key]


class _Saved:
    """What the graph keeps instead of the tensor: the tensor itself, and a way to notice its release."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor


@dataclass(frozen=True)
class Memory:
    """Bytes held for backward during a call: ``peak`` (the most at once, each storage once) and
    ``total`` (the bytes of every saved tensor summed, as if nothing were ever freed or shared)."""

    peak: int
    total: int


def held_for_backward(fn: Callable[[], object], exclude: Iterable[Tensor] = ()) -> Memory:
    """Run ``fn()`` and measure the tensors autograd saves for backward during it, leaving out the storage
    of ``exclude`` (see the module's docstring). Only autograd's own graphs are seen: ``torch.func``
    transforms do not run under saved-tensor hooks, so measure their loop equivalents
    (``vectorised=False`` in :mod:`metagen_utils.meta`).

    >>> w = torch.ones(1000, requires_grad=True)
    >>> held_for_backward(lambda: (w * torch.ones(1000)).sum().backward())   # saves w's partner: 4000 B
    Memory(peak=4000, total=4000)
    >>> held_for_backward(lambda: (w * w).exp().sum().backward(), exclude=[w])   # exp's output only
    Memory(peak=4000, total=4000)
    """
    held = _Held()
    skip = {t.untyped_storage().data_ptr() for t in exclude}

    def pack(tensor: Tensor) -> Tensor | _Saved:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in skip:
            return tensor
        held.add(key, storage.nbytes(), tensor.numel() * tensor.element_size())
        saved = _Saved(tensor)
        weakref.finalize(saved, held.release, key)
        return saved

    def unpack(saved: Tensor | _Saved) -> Tensor:
        return saved.tensor if isinstance(saved, _Saved) else saved

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        fn()
    return Memory(held.peak, held.total)
