"""The networks the notebooks meta-learn: small, plain ``nn.Module``s with no hidden state.

Every model here is a pure function of its parameters and its input — no BatchNorm, no buffers that
change in ``forward`` — so that :mod:`metagen_utils.meta` can run it with
``torch.func.functional_call`` under ``torch.func.vmap`` (one set of adapted weights per task).

* :class:`LinearMetaNet` — the text's f_θ(x) = W_θ x + b_θ.
* :class:`FourierFeatures` — fixed random Fourier features γ(u, v) of pixel coordinates; a linear
  network on top of them is a tiny image model that is still linear in θ.
* :class:`CoordMLP` — a small nonlinear coordinate network (an "implicit image"), optionally with a
  context vector that can be the only thing adapted per task (CAVIA-style).
* :class:`ConvGenerator` — latent code → image, a DCGAN-style decoder sized for 28×28.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}


class LinearMetaNet(nn.Linear):
    """f_θ(x) = W_θ x + b_θ, with θ = (``weight`` [out, in], ``bias`` [out]).

    An ``nn.Linear`` under the text's name, so its parameters are called ``weight`` and ``bias``.
    x: ``[..., in_features]`` → ``[..., out_features]``.
    """


class FourierFeatures(nn.Module):
    """γ(p) = [cos(2π B p), sin(2π B p)] for pixel coordinates p = (u, v) ∈ [-1, 1]².

    B: ``[num_features, 2]`` drawn once from N(0, scale²) with a generator seeded by ``seed``, and kept
    as a buffer: it is fixed, never learned or adapted. A larger ``scale`` lets a linear layer on top
    represent finer detail (Tancik et al., 2020). p: ``[..., 2]`` → ``[..., 2 * num_features]``.
    """

    def __init__(self, num_features: int = 64, scale: float = 3.0, seed: int = 0) -> None:
        super().__init__()
        if num_features < 1:
            raise ConfigError(f"FourierFeatures: num_features={num_features!r}; expected at least 1")
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(num_features, 2, generator=generator) * scale)

    @staticmethod
    def coords(height: int, width: int) -> Tensor:
        """Pixel-centre coordinates ``[height * width, 2]`` as (u, v) = (column, row) in [-1, 1], in
        row-major order, so that ``values.reshape(height, width)`` puts pixel i back where it came from."""
        v, u = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        return torch.stack([u, v], dim=-1).reshape(height * width, 2)

    def forward(self, p: Tensor) -> Tensor:
        projected = 2 * math.pi * p @ self.B.T
        return torch.cat([torch.cos(projected), torch.sin(projected)], dim=-1)


class CoordMLP(nn.Module):
    """A coordinate MLP: ``depth`` hidden layers of width ``hidden`` with ReLU or SiLU between them.

    x: ``[..., in_features]`` → ``[..., out_features]``. With ``context_dim > 0`` a parameter
    ``context`` ``[context_dim]`` (initialised to zero) is appended to every input; meta-learning with
    ``adapt=("context",)`` then adapts only that vector per task and shares every weight (CAVIA,
    Zintgraf et al., 2019). Parameter names: ``net.0.weight``, ``net.0.bias``, …, ``context``.
    """

    def __init__(self, in_features: int, hidden: int = 64, depth: int = 2, out_features: int = 1,
                 activation: str = "relu", context_dim: int = 0) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"CoordMLP: activation={activation!r}; expected one of {sorted(ACTIVATIONS)}")
        if depth < 1:
            raise ConfigError(f"CoordMLP: depth={depth!r}; expected at least 1 hidden layer")
        widths = [in_features + context_dim] + [hidden] * depth
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(hidden, out_features))
        self.net = nn.Sequential(*layers)
        self.context = nn.Parameter(torch.zeros(context_dim)) if context_dim > 0 else None

    def forward(self, x: Tensor) -> Tensor:
        if self.context is not None:
            x = torch.cat([x, self.context.expand(*x.shape[:-1], -1)], dim=-1)
        return self.net(x)


class ConvGenerator(nn.Module):
    """Latent code → image: Linear → 64 × (S/4) × (S/4) → two stride-2 transposed convolutions → S × S.

    z: ``[B, latent_dim]`` → ``[B, channels, image_size, image_size]`` in (0, 1) (sigmoid output).

    The Linear layer's size is derived from ``image_size``: the original listing hard-coded a Linear for
    an 8×8 feature map after convolutions that produced 256×256, which fails with a shape error.

    There is no BatchNorm on purpose: its running statistics are buffers that ``forward`` overwrites, so
    one set of statistics would be shared, and mutated, by every task of a vmapped inner loop, and
    per-batch statistics would make a task's loss depend on which images sit beside it.
    """

    def __init__(self, latent_dim: int = 32, channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        if image_size % 4 != 0 or image_size < 4:
            raise ConfigError(f"ConvGenerator: image_size={image_size!r}; expected a positive multiple of 4 "
                              "(two stride-2 upsamplings from image_size/4)")
        base = image_size // 4
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 64 * base * base), nn.ReLU(),
            nn.Unflatten(-1, (64, base, base)),
            nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1), nn.ReLU(),   # → S/2
            nn.ConvTranspose2d(32, channels, kernel_size=4, stride=2, padding=1),        # → S
            nn.Sigmoid(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
