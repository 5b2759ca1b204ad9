"""Pixel completion with the linear meta-parameter network (notebook 02).

One task is one image: a random subset of its pixels is observed (the support set), the model adapts to
them, and it is scored on the pixels it never saw (the query set). The model is the text's
f_θ(x) = W x + b with x = γ(u, v), fixed random Fourier features of the pixel's coordinates, and the
output the pixel's gray value; it is linear in θ = (W, b), so k steps of gradient descent on the
support MSE have a closed form, which :func:`gd_closed_form` computes and the tests hold the library's
:func:`metagen_utils.meta.inner_loop` to.

Methods compared (all score the same tasks, so differences are paired):

* k-step gradient descent from an initialisation θ₀: zero, the least-squares fit of the mean
  background image (:func:`fit_image`), or the MAML-learned θ₀ (:func:`train_maml`);
* two estimates that condition a Gaussian model of images on the observed pixels,
  E[x_u | x_o] = μ_u + Σ_uo (Σ_oo + δI)⁻¹ (x_o − μ_o) (:func:`conditional_mean`): with μ, Σ the mean
  and covariance of background images (:func:`fit_gaussian`), and ridge regression on the observed
  pixels, which is the same formula with μ = X̃θ_prior and the Fourier kernel Σ = X̃X̃ᵀ
  (:func:`ridge_prior`).

Shapes: D = height·width pixels, F Fourier features, X̃ = [features, 1] ``[D, F + 1]``, θ a vector
``[F + 1]`` (weights, then bias).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..config import progress_disabled
from ..data.images import ImageSet
from ..errors import ConfigError, DataError
from ..stats import format_ci, mean_ci, paired_difference, psnr
from ..meta.maml import MetaConfig, TaskBatch, init_meta_params, inner_loop, meta_step
from ..models import FourierFeatures, LinearMetaNet

KS = (0, 1, 2, 5, 10)
DTYPE = torch.float64  # evaluation and closed forms: float64, so that checks can be tight


@dataclass(frozen=True)
class CompletionTasks:
    """Images with the pixels each task observes.

    pixels: ``[tasks, D]`` gray values; observed / unobserved: ``[tasks, n_obs]`` / ``[tasks, D − n_obs]``
    pixel indices (row-major, as :meth:`FourierFeatures.coords`) in the random order they were drawn, so
    the first m unobserved ones are a random subset; image_ids: ``[tasks]`` indices into the ImageSet the
    tasks came from.
    """

    pixels: Tensor
    observed: Tensor
    unobserved: Tensor
    image_ids: Tensor
    height: int
    width: int

    def __len__(self) -> int:
        return len(self.pixels)

    def observed_mask(self) -> Tensor:
        """``[tasks, D]`` booleans, True where the task observes the pixel."""
        mask = torch.zeros(self.pixels.shape, dtype=torch.bool, device=self.pixels.device)
        return mask.scatter_(1, self.observed, True)

    def select(self, index) -> "CompletionTasks":
        """The tasks ``index`` picks (a slice, a list or a tensor of task numbers)."""
        return CompletionTasks(self.pixels[index], self.observed[index], self.unobserved[index],
                               self.image_ids[index], self.height, self.width)

    def to(self, device: str | torch.device) -> "CompletionTasks":
        return CompletionTasks(self.pixels.to(device), self.observed.to(device), self.unobserved.to(device),
                               self.image_ids.to(device), self.height, self.width)


def make_tasks(images: ImageSet, num_tasks: int, observed: float = 0.25, seed: int | Sequence[int] = 0,
               one_per_class: bool = True, dtype: torch.dtype = DTYPE) -> CompletionTasks:
    """``num_tasks`` completion tasks from a gray ImageSet, the same for the same ``seed``.

    one_per_class: take the classes in a random order and one random image of each (again in a new order
    once every class has a task), so tasks are as independent as the set allows; else images uniformly.
    observed: the fraction of each image's pixels the task observes, chosen uniformly at random.
    """
    if images.images.shape[1] != 1:
        raise DataError(f"{images.name}: completion tasks need gray images [N, 1, H, W]; found "
                        f"{images.images.shape[1]} channels (load with PreprocessConfig(channels=1))")
    if not (isinstance(num_tasks, int) and num_tasks >= 1):
        raise ConfigError(f"num_tasks={num_tasks!r} is not valid; expected an integer ≥ 1")
    height, width = images.images.shape[2:]
    size = height * width
    n_obs = int(round(observed * size)) if isinstance(observed, (int, float)) else 0
    if not 1 <= n_obs <= size - 1:
        raise ConfigError(f"observed={observed!r} is not valid; expected a fraction that leaves at least one "
                          f"observed and one unobserved pixel of the {height}×{width} images")
    rng = np.random.default_rng(seed)
    if one_per_class:
        members = [np.flatnonzero(images.labels == c) for c in range(images.num_classes)]
        members = [m for m in members if len(m)]
        order = np.concatenate([rng.permutation(len(members)) for _ in range(-(-num_tasks // len(members)))])
        ids = np.array([rng.choice(members[c]) for c in order[:num_tasks]])
    else:
        ids = rng.choice(len(images.images), num_tasks, replace=num_tasks > len(images.images))
    ranks = np.argsort(rng.random((num_tasks, size)), axis=1)
    pixels = torch.as_tensor(images.images[ids].reshape(num_tasks, size), dtype=dtype)
    return CompletionTasks(pixels, torch.as_tensor(ranks[:, :n_obs]), torch.as_tensor(ranks[:, n_obs:]),
                           torch.as_tensor(ids), height, width)


def three_splits(images: ImageSet, seed: int = 0, validation: float = 0.1,
                 evaluation: float = 0.2) -> tuple[ImageSet, ImageSet, ImageSet]:
    """(background, validation, evaluation) of ``images``. A set without validation or evaluation classes
    (a plain class-per-folder set is all background) gets them carved from its background classes: a
    seeded random ``validation`` / ``evaluation`` fraction of them, at least one class each."""
    names = ("background", "validation", "evaluation")
    present = set(images.splits)
    if set(names) <= present:
        return tuple(images.split(name) for name in names)  # type: ignore[return-value]
    pool = [i for i, s in enumerate(images.splits) if s == "background"]
    missing = [n for n in names[1:] if n not in present]
    if len(pool) < 1 + len(missing):
        raise DataError(f"{images.name}: {len(pool)} background class(es); at least {1 + len(missing)} are "
                        f"needed to carve {' and '.join(missing)} classes from them")
    order = np.random.default_rng(seed).permutation(pool).tolist()
    carved = {}
    for name, fraction in (("validation", validation), ("evaluation", evaluation)):
        if name in missing:
            count = max(1, int(round(fraction * len(pool))))
            carved[name], order = images.select_classes(order[:count]), order[count:]
    parts = {"background": images.select_classes(sorted(order)), **carved}
    return tuple(parts[name] if name in parts else images.split(name) for name in names)  # type: ignore


def fourier_design(height: int, width: int, num_features: int = 256, scale: float = 3.0, seed: int = 0,
                   dtype: torch.dtype = DTYPE) -> Tensor:
    """γ(u, v) of every pixel: ``[height·width, 2·num_features]``, row-major like the images."""
    gamma = FourierFeatures(num_features, scale, seed).to(dtype)
    return gamma(FourierFeatures.coords(height, width).to(dtype))


def with_bias(features: Tensor) -> Tensor:
    """X̃ = [features, 1]: ``[..., F]`` → ``[..., F + 1]``, so that W x + b = X̃ θ."""
    return torch.cat([features, torch.ones_like(features[..., :1])], dim=-1)


def make_model(num_features: int, dtype: torch.dtype = DTYPE, device: str | torch.device = "cpu") -> LinearMetaNet:
    """The linear meta-parameter network f_θ(x) = W x + b with one gray output, θ = 0."""
    model = LinearMetaNet(num_features, 1).to(device=device, dtype=dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def as_params(theta: Tensor) -> dict[str, Tensor]:
    """θ ``[F + 1]`` → the LinearMetaNet's parameters {"weight": [1, F], "bias": [1]}."""
    return {"weight": theta[:-1].reshape(1, -1), "bias": theta[-1:]}


def as_vector(params: dict[str, Tensor]) -> Tensor:
    """The LinearMetaNet's parameters → θ ``[F + 1]`` (detached)."""
    return torch.cat([params["weight"].detach().reshape(-1), params["bias"].detach().reshape(-1)])


def task_batch(features: Tensor, tasks: CompletionTasks, query_pixels: int | None = None) -> TaskBatch:
    """Support = the observed pixels' features and values, query = the unobserved ones (or the first
    ``query_pixels`` of them, a random subset): support_x ``[tasks, n_obs, F]``, support_y
    ``[tasks, n_obs, 1]``, query_x/query_y likewise."""
    features = features.to(tasks.pixels.dtype)
    query = tasks.unobserved if query_pixels is None else tasks.unobserved[:, :query_pixels]

    def rows(index: Tensor) -> Tensor:   # index_select of a flat index: a faster gather than features[index]
        return features.index_select(0, index.reshape(-1)).reshape(*index.shape, features.shape[1])

    return TaskBatch(rows(tasks.observed), tasks.pixels.gather(1, tasks.observed)[..., None],
                     rows(query), tasks.pixels.gather(1, query)[..., None])


def fit_image(features: Tensor, image: Tensor, ridge: float = 1e-4) -> Tensor:
    """θ fitting one whole image by least squares, ``[F + 1]``: (X̃ᵀX̃ + ridge·I)⁻¹ X̃ᵀ image.

    Fitted to the mean background image this is the mean-image initialisation, what joint training (one
    θ for all images) converges to. The tiny ridge picks, among fits that are exact to ~1e-7, one of
    small norm, as gradient descent from zero does; X̃ has singular values down to ~1e-5.
    """
    design = with_bias(features)
    gram = design.T @ design + ridge * torch.eye(design.shape[1], dtype=design.dtype, device=design.device)
    return torch.cholesky_solve((design.T @ image.reshape(-1).to(design.device, design.dtype))[:, None],
                                torch.linalg.cholesky(gram))[:, 0]


def normal_equations(features_o: Tensor, values_o: Tensor) -> tuple[Tensor, Tensor]:
    """The support loss L(θ) = mean (X̃_o θ − y_o)² has gradient A θ − c with A = (2/n) X̃_oᵀX̃_o
    ``[F + 1, F + 1]`` and c = (2/n) X̃_oᵀ y_o ``[F + 1]``."""
    design = with_bias(features_o)
    scale = 2.0 / len(design)
    return scale * design.T @ design, scale * design.T @ values_o.reshape(-1)


def gd_closed_form(features_o: Tensor, values_o: Tensor, theta0: Tensor, lr: float, steps: int) -> Tensor:
    """θ_k after ``steps`` gradient steps of rate ``lr`` on the support MSE, without iterating.

    θ_{j+1} = θ_j − α(Aθ_j − c) gives θ_k = θ* + (I − αA)^k (θ₀ − θ*) for any θ* with Aθ* = c. In A's
    eigenbasis (A = Q diag(λ) Qᵀ) that is z_k = (1 − αλ)^k z₀ + α Σ_{j<k} (1 − αλ)^j c̃, which needs no
    θ* and stays exact when A is singular (fewer pixels than parameters).
    """
    A, c = normal_equations(features_o, values_o)
    lam, Q = torch.linalg.eigh(A)
    decay = 1 - lr * lam
    geometric = sum(decay ** j for j in range(steps)) if steps else torch.zeros_like(lam)
    return Q @ (decay ** steps * (Q.T @ theta0) + lr * geometric * (Q.T @ c))


def _bar(iterable: Iterable, progress: bool, desc: str, total: int | None = None):
    return tqdm(iterable, desc=desc, total=total, disable=not progress or progress_disabled(), leave=False)


def complete_by_gd(features: Tensor, tasks: CompletionTasks, theta0: Tensor, lr: float, ks: Sequence[int] = KS,
                   progress: bool = False, desc: str = "gradient descent") -> Tensor:
    """Adapt θ₀ to each task's observed pixels with :func:`metagen_utils.meta.inner_loop`, one step at a
    time, and generate the whole image after each k in ``ks``: ``[len(ks), tasks, D]``."""
    model = make_model(features.shape[1], features.dtype, features.device)
    pixels = tasks.pixels.to(features.dtype)
    out = torch.empty(len(ks), len(tasks), features.shape[0], dtype=features.dtype, device=features.device)
    for t in _bar(range(len(tasks)), progress, desc):
        support_x, support_y = features[tasks.observed[t]], pixels[t, tasks.observed[t], None]
        params = as_params(theta0.to(features.device, features.dtype))
        for step in range(max(ks) + 1):
            if step in ks:
                out[list(ks).index(step), t] = features @ params["weight"][0] + params["bias"]
            if step < max(ks):
                params = inner_loop(model, params, support_x, support_y, F.mse_loss, steps=1, lr=lr,
                                    create_graph=False)
                params = {n: p.detach() for n, p in params.items()}
    return out


def train_maml(features: Tensor, images: ImageSet, cfg: MetaConfig, steps: int = 200, meta_batch_size: int = 64,
               outer_lr: float = 0.02, observed: float = 0.25, query_pixels: int | None = None, seed: int = 0,
               dtype: torch.dtype = torch.float32, progress: bool = True) -> tuple[Tensor, np.ndarray]:
    """MAML's θ₀: second-order, vectorised :func:`metagen_utils.meta.meta_step` from θ = 0, Adam with a cosine
    decay of ``outer_lr`` to zero, on fresh tasks of ``images`` every step (support = observed pixels,
    query = the rest, or a random ``query_pixels`` of them: the same expected loss for less work).
    Returns θ₀ ``[F + 1]`` (in ``features``' dtype) and the meta-loss per step."""
    if cfg.algorithm not in ("maml", "fomaml"):
        raise ConfigError(f"train_maml: cfg.algorithm={cfg.algorithm!r}; expected 'maml' or 'fomaml' "
                          "(learned inner rates belong to notebook 03)")
    model = make_model(features.shape[1], dtype, features.device)
    meta_params = init_meta_params(model, cfg)
    optimizer = torch.optim.Adam(meta_params.values(), lr=outer_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    train_features = features.to(dtype)
    losses = np.empty(steps)
    for step in _bar(range(steps), progress, "MAML"):
        tasks = make_tasks(images, meta_batch_size, observed, seed=(seed, step), one_per_class=False,
                           dtype=dtype).to(features.device)
        losses[step] = meta_step(model, meta_params, optimizer, task_batch(train_features, tasks, query_pixels), cfg,
                                 F.mse_loss, vectorised=True)
        schedule.step()
    return as_vector(meta_params).to(features.dtype), losses


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


def psnr_unobserved(predictions: Tensor, tasks: CompletionTasks) -> np.ndarray:
    """PSNR (dB) of each task's unobserved pixels. predictions: ``[..., tasks, D]`` → ``[..., tasks]``."""
    lead = predictions.shape[:-2]
    flat = predictions.reshape(-1, *predictions.shape[-2:])
    mask = ~tasks.observed_mask()
    return np.stack([psnr(p, tasks.pixels, mask) for p in flat]).reshape(*lead, len(tasks))


def choose(grid: Sequence[float], score: Callable[[float], float]) -> tuple[float, dict[float, float]]:
    """The value of ``grid`` with the highest ``score`` (e.g. mean validation PSNR), and every score.
    A non-finite score (a diverging step size) never wins."""
    scores = {value: float(score(value)) for value in grid}
    finite = {v: s for v, s in scores.items() if np.isfinite(s)}
    if not finite:
        raise ConfigError(f"choose: every value of {list(grid)} scored non-finite {scores}")
    return max(finite, key=finite.get), scores


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
