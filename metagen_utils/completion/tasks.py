"""Pixel completion with the linear meta-parameter network (notebook 02).

One task is one image: a random subset of its pixels is observed (the support set), the model adapts to
them, and it is scored on the pixels it never saw (the query set). The model is the text's
f_θ(x) = W x + b with x = γ(u, v), fixed random Fourier features of the pixel's coordinates, and the
output the pixel's gray value; it is linear in θ = (W, b), so k steps of gradient descent on the
support MSE have a closed form, which :func:`gd_closed_form` computes and the tests hold the library's
:func:`metagen_utils.meta.inner_loop` to.

Here: the tasks, the model, its closed forms, k-step gradient descent from an initialisation θ₀ (zero,
the least-squares fit of the mean background image, :func:`fit_image`, or the MAML-learned θ₀,
:func:`train_maml`). The Gaussian baselines are in :mod:`.gaussian`, the scoring in :mod:`.scoring`.

Shapes: D = height·width pixels, F Fourier features, X̃ = [features, 1] ``[D, F + 1]``, θ a vector
``[F + 1]`` (weights, then bias).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..config import progress_disabled
from ..data.images import ImageSet
from ..data.splits import hold_out
from ..errors import ConfigError, DataError
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


def three_splits(images: ImageSet, seed: int = 0) -> tuple[ImageSet, ImageSet, ImageSet]:
    """(background, validation, evaluation) of ``images``. A set without validation or evaluation classes
    (a plain class-per-folder set is all background) gets them carved from its background classes by
    :func:`metagen_utils.data.splits.hold_out`'s seeded default."""
    held = hold_out(images, seed=seed)
    return tuple(held.split(name) for name in ("background", "validation", "evaluation"))  # type: ignore


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
    optimizer = torch.optim.Adam(meta_params.values(), lr=outer_lr, fused=True)   # fused: see kernels.sqrt
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
