"""A small glyph classifier and the sample-quality metrics that read its features.

No pretrained network can be had offline, so the kit trains its own judge: a small convolutional net,
softmax over the *background* classes, whose penultimate layer is the feature space for

* :func:`fidelity` — in an N-way episode of unseen classes, the prototype of a class is the mean
  feature of its held-out real (query) images; a generated sample counts as faithful when the nearest
  prototype is its own class's. Chance is 1/N; real support images give the reference.
* :func:`diversity` — mean pairwise L2 distance within one class's generated set, so that copying the
  support images (high fidelity, low diversity) is visible.
* :func:`frechet_distance` — the Fréchet distance between Gaussians fitted to two feature sets (FID
  with this classifier in place of Inception); :func:`frechet_difference` compares two generators on the
  same tasks with a bootstrap interval, since a pooled distance has no per-task scores to average.

The classifier has GroupNorm and no BatchNorm, so its features of an image do not depend on which
other images share the batch.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import kernels
from ..data.images import ImageSet
from ..errors import ConfigError, DataError
from ..training.schedule import warmup_cosine_scheduler


class GlyphClassifier(nn.Module):
    """Three stride-2 3×3 convolutions (GroupNorm, ReLU) → ``feature_dim`` features → class logits.

    x: ``[n, C, H, W]`` → logits ``[n, num_classes]``; :meth:`features` gives ``[n, feature_dim]``.
    Strided convolutions instead of max-pooling keep it cheap enough to train in seconds on 2 cores.
    """

    def __init__(self, num_classes: int, width: int = 16, feature_dim: int = 64, channels: int = 1,
                 image_size: int = 28) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"GlyphClassifier: num_classes={num_classes!r}; expected at least 2")
        widths = (channels, width, 2 * width, 2 * width)
        layers: list[nn.Module] = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(w_in, w_out, 3, stride=2, padding=1), nn.GroupNorm(8, w_out), nn.ReLU()]
        side = image_size
        for _ in range(3):
            side = (side + 1) // 2
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(widths[-1] * side * side, feature_dim),
                                  nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``[n, feature_dim]`` of images ``[n, C, H, W]``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def train_classifier(images: ImageSet, epochs: int = 2, batch_size: int = 128, lr: float = 3e-3,
                     width: int = 16, feature_dim: int = 64, seed: int = 0) -> GlyphClassifier:
    """Train a :class:`GlyphClassifier` on every class of ``images`` (e.g. the background split).

    Adam, the rate warmed up linearly then decayed along a cosine (without the warm-up, a trial run at 3e-3
    left every penultimate ReLU dead, all features equal). The batch order comes from a generator
    seeded by ``seed``, so one seed gives the same weights on CPU. Returns the classifier in eval mode.
    """
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"train_classifier: epochs={epochs!r}, batch_size={batch_size!r}; expected ≥ 1")
    torch.manual_seed(seed)
    x, y = torch.from_numpy(images.images), torch.from_numpy(images.labels)
    batch_size = min(batch_size, len(x))
    model = GlyphClassifier(images.num_classes, width, feature_dim, images.image_shape[0], images.image_shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)   # fused: see kernels.sqrt
    steps = epochs * (len(x) // batch_size)
    schedule = warmup_cosine_scheduler(optimizer, steps, warmup=max(1, steps // 7))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x) - batch_size + 1, batch_size):
            batch = order[start:start + batch_size]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def features(classifier: GlyphClassifier, images: Tensor, batch_size: int = 2048) -> Tensor:
    """Penultimate features of images ``[..., C, H, W]`` → ``[..., feature_dim]``, in batches."""
    if images.ndim < 4:
        raise DataError(f"features: images must be [..., C, H, W]; found shape {tuple(images.shape)}")
    flat = images.reshape(-1, *images.shape[-3:])
    out = torch.cat([classifier.features(flat[i:i + batch_size]) for i in range(0, len(flat), batch_size)])
    return out.reshape(*images.shape[:-3], out.shape[-1])


def fidelity_from_features(generated: Tensor, query: Tensor) -> Tensor:
    """Fraction of each class's generated samples nearest (Euclidean) to its own class's prototype.

    generated: ``[tasks, n_way, G, D]`` features of generated samples;
    query: ``[tasks, n_way, Q, D]`` features of held-out real images, whose means are the prototypes.
    Returns ``[tasks, n_way]``.
    """
    if generated.ndim != 4 or query.ndim != 4 or generated.shape[:2] != query.shape[:2]:
        raise DataError(f"fidelity: expected generated [tasks, n_way, G, D] and query [tasks, n_way, Q, D] "
                        f"with the same tasks and n_way; found {tuple(generated.shape)} and {tuple(query.shape)}")
    prototypes = query.mean(dim=2)                                        # [T, N, D]
    distances = kernels.distances(generated.flatten(1, 2), prototypes)    # [T, N*G, N]
    nearest = distances.argmin(-1).view(generated.shape[:3])              # [T, N, G]
    own = torch.arange(generated.shape[1]).view(1, -1, 1)
    return (nearest == own).float().mean(-1)


def fidelity(classifier: GlyphClassifier, generated: Tensor | Sequence[Tensor],
             query: Tensor | Sequence[Tensor]) -> Tensor:
    """Prototype fidelity of generated images, per class-task ``[tasks, n_way]``.

    generated: ``[tasks, n_way, G, C, H, W]``, or a sequence of per-task ``[n_way, G_t, C, H, W]``
    (tasks may have different numbers of samples); query: ``[tasks, n_way, Q, C, H, W]`` or per-task
    ``[n_way, Q_t, C, H, W]`` — real images of the same classes not used to generate.
    """
    if isinstance(generated, Tensor) and isinstance(query, Tensor):
        return fidelity_from_features(features(classifier, generated), features(classifier, query))
    if len(generated) != len(query):
        raise DataError(f"fidelity: {len(generated)} generated tasks but {len(query)} query tasks")
    return torch.cat([fidelity_from_features(features(classifier, g)[None], features(classifier, q)[None])
                      for g, q in zip(generated, query)])


def diversity(samples: Tensor) -> Tensor:
    """Mean pairwise L2 distance between the samples of each set: ``[..., G, C, H, W]`` → ``[...]``.

    Pixel distances (values in [0, 1]); NaN where a set has fewer than two samples.
    """
    if samples.ndim < 4:
        raise DataError(f"diversity: samples must be [..., G, C, H, W]; found shape {tuple(samples.shape)}")
    flat = samples.flatten(-3)
    count = flat.shape[-2]
    if count < 2:
        return torch.full(flat.shape[:-2], float("nan"))
    total = kernels.distances(flat, flat).sum((-1, -2))
    return total / (count * (count - 1))


def frechet_distance(feats_a: Tensor | np.ndarray, feats_b: Tensor | np.ndarray, ridge: float = 1e-6) -> float:
    """Fréchet distance between N(μ_a, Σ_a) and N(μ_b, Σ_b) fitted to two feature sets ``[n, D]``:

        |μ_a − μ_b|² + tr Σ_a + tr Σ_b − 2 tr (Σ_a^½ Σ_b Σ_a^½)^½.

    Both covariances get ``ridge · mean variance · I`` added so that small samples (n ≤ D, singular
    covariances) still give a finite, stable number. Square roots come from symmetric eigendecompositions
    (in float64), which unlike a general matrix square root never return complex parts.
    """
    a, b = (np.asarray(f.detach().cpu() if isinstance(f, Tensor) else f, dtype=np.float64) for f in (feats_a, feats_b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise DataError(f"frechet_distance: expected two [n ≥ 2, D] feature sets with the same D; found "
                        f"{a.shape} and {b.shape}")
    return _frechet_from_moments(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False), ridge)


def _frechet_from_moments(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray,
                          ridge: float = 1e-6) -> float:
    eye = np.eye(len(mean_a)) * ridge * max(float(np.trace(cov_a) + np.trace(cov_b)) / (2 * len(mean_a)), 1e-12)
    cov_a, cov_b = cov_a + eye, cov_b + eye
    root_a = _sqrtm_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def frechet_difference(feats_a: Tensor, feats_b: Tensor, reference: Tensor, resamples: int = 200,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Fréchet(a, reference) − Fréchet(b, reference) and the half-width of its ``level`` interval.

    feats_a, feats_b: ``[T, G, D]`` features of two generators' samples for the same T tasks; reference:
    ``[T, Q, D]`` features of those tasks' real images. The difference is computed on all tasks; the
    interval is the normal bootstrap one (z × standard deviation over ``resamples`` resamples of T tasks
    drawn with replacement, the same tasks for a, b and the reference, so the comparison stays paired).
    Negative: a is closer to the real images than b.
    """
    a, b, ref = (np.asarray(f.detach().cpu() if isinstance(f, Tensor) else f, dtype=np.float64)
                 for f in (feats_a, feats_b, reference))
    if a.ndim != 3 or a.shape != b.shape or ref.ndim != 3 or ref.shape[::2] != a.shape[::2]:
        raise DataError(f"frechet_difference: expected feats_a and feats_b [T, G, D] of one shape and a "
                        f"reference [T, Q, D] with the same T and D; found {a.shape}, {b.shape} and {ref.shape}")
    if resamples < 2:
        raise ConfigError(f"frechet_difference: resamples={resamples}; expected at least 2")

    # Per-task sums of features and of their outer products: a resample's pooled mean and covariance are
    # then sums over its tasks, with no pass over the samples themselves.
    sums = [(f.shape[1], f.sum(1), np.einsum("tgd,tge->tde", f, f)) for f in (a, b, ref)]

    def moments(which: int, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pooled mean and covariance of a resample that holds task t ``times[t]`` times."""
        per_task, total, outer = sums[which]
        count = per_task * times.sum()
        mean = times @ total / count
        return mean, (np.tensordot(times, outer, 1) - count * np.outer(mean, mean)) / (count - 1)

    def difference(times: np.ndarray) -> float:
        real = moments(2, times)
        return _frechet_from_moments(*moments(0, times), *real) - _frechet_from_moments(*moments(1, times), *real)

    rng = np.random.default_rng(seed)
    draws = [difference(np.bincount(rng.integers(0, len(a), len(a)), minlength=len(a)).astype(np.float64))
             for _ in range(resamples)]
    z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + level / 2)))
    return difference(np.ones(len(a))), z * float(np.std(draws, ddof=1))


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
