"""The Gaussian baselines of pixel completion (notebooks 02 and 03): estimates that condition a Gaussian
model of images on the observed pixels, E[x_u | x_o] = μ_u + Σ_uo (Σ_oo + δI)⁻¹ (x_o − μ_o)
(:func:`conditional_mean`), with μ, Σ the mean and covariance of background images (:func:`fit_gaussian`),
or ridge regression on the observed pixels, which is the same formula with μ = X̃θ_prior and the Fourier
kernel Σ = X̃X̃ᵀ (:func:`ridge_prior`), or the network's own feature space (:func:`feature_space_prior`).

Shapes as in :mod:`.tasks`: D pixels, X̃ = [features, 1] ``[D, F + 1]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.images import ImageSet
from ..errors import DataError
from .tasks import DTYPE, CompletionTasks, _bar, with_bias


@dataclass(frozen=True)
class GaussianPrior:
    """Pixels ~ N(mean, cov) and observations x_o = pixels_o + N(0, noise·I). mean: ``[D]``; cov: ``[D, D]``."""

    mean: Tensor
    cov: Tensor
    noise: float = 1e-4

    def with_noise(self, noise: float) -> "GaussianPrior":
        return GaussianPrior(self.mean, self.cov, noise)


def fit_gaussian(images: ImageSet, noise: float = 1e-4, dtype: torch.dtype = DTYPE) -> GaussianPrior:
    """The mean ``[D]`` and covariance ``[D, D]`` (ddof = 1) of a gray ImageSet's pixels."""
    pixels = torch.as_tensor(images.images.reshape(len(images.images), -1), dtype=dtype)
    if len(pixels) < 2:
        raise DataError(f"{images.name}: a covariance needs at least 2 images; found {len(pixels)}")
    mean = pixels.mean(0)
    centred = pixels - mean
    return GaussianPrior(mean, centred.T @ centred / (len(pixels) - 1), noise)


def ridge_prior(features: Tensor, theta_prior: Tensor, ridge: float) -> GaussianPrior:
    """Ridge regression on the observed pixels, min ‖X̃_o θ − x_o‖² + ridge·‖θ − θ_prior‖², as a Gaussian
    prior: its completion X̃θ̂ equals the conditional mean with mean X̃θ_prior, cov X̃X̃ᵀ, noise ridge."""
    design = with_bias(features)
    return GaussianPrior(design @ theta_prior.to(design.device, design.dtype), design @ design.T, ridge)


def feature_space_prior(features: Tensor, images: ImageSet, max_images: int = 6000, ridge: float = 1e-4,
                        seed: int = 0) -> GaussianPrior:
    """The Gaussian model of images restricted to what the linear network can draw.

    θ is fitted to each of (up to) ``max_images`` images; with their mean μ_θ and covariance Σ_θ and the
    mean squared fitting residual s², pixels ~ N(X̃μ_θ, X̃Σ_θX̃ᵀ + s²I). Its conditional mean is the best
    completion linear in the observed pixels that this feature set can express, a bound for any update
    rule of the network, where :func:`fit_gaussian`'s is the bound for any linear completion at all.
    """
    pixels = torch.as_tensor(images.images.reshape(len(images.images), -1), dtype=features.dtype)
    pick = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(seed))[:max_images]
    design = with_bias(features)
    gram = design.T @ design + ridge * torch.eye(design.shape[1], dtype=design.dtype, device=design.device)
    thetas = torch.cholesky_solve(design.T @ pixels[pick].T.to(design.device), torch.linalg.cholesky(gram)).T
    residual = ((thetas @ design.T - pixels[pick].to(design.device)) ** 2).mean().item()
    cov = design @ torch.cov(thetas.T) @ design.T
    return GaussianPrior(design @ thetas.mean(0), cov + residual * torch.eye(len(cov), dtype=cov.dtype,
                                                                            device=cov.device))


def conditional_mean(prior: GaussianPrior, tasks: CompletionTasks, chunk: int = 25, progress: bool = False,
                     desc: str = "conditional mean") -> Tensor:
    """E[x | x_o] for every task: μ + Σ_{:,o} (Σ_oo + δI)⁻¹ (x_o − μ_o), ``[tasks, D]``.

    One Cholesky factorisation per task, ``chunk`` tasks at a time (cholesky + cholesky_solve batch
    safely; a batched ``torch.linalg.solve`` does not on every MKL build).
    """
    like = dict(dtype=tasks.pixels.dtype, device=tasks.pixels.device)
    mean, cov = prior.mean.to(**like), prior.cov.to(**like)
    out = torch.empty_like(tasks.pixels)
    eye = torch.eye(tasks.observed.shape[1], dtype=cov.dtype, device=cov.device)
    for start in _bar(range(0, len(tasks), chunk), progress, desc):
        o = tasks.observed[start:start + chunk]                              # [c, n]
        factor = torch.linalg.cholesky(cov[o[:, :, None], o[:, None, :]] + prior.noise * eye)
        residual = tasks.pixels[start:start + chunk].gather(1, o) - mean[o]  # [c, n]
        weights = torch.cholesky_solve(residual[..., None], factor)          # [c, n, 1]
        out[start:start + chunk] = mean + (cov.T[o].transpose(1, 2) @ weights)[..., 0]
    return out
