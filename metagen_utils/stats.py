"""Metrics and confidence intervals shared by the notebooks.

* :func:`psnr` — peak signal-to-noise ratio per image, optionally on a subset of its pixels.
* :func:`mean_ci` — a mean and the half-width of its t-distribution confidence interval.
* :func:`paired_difference` — the mean ± CI of ``a − b`` over the *same* tasks: two methods scored on the
  same images differ far less than their separate intervals suggest, because most of the spread between
  tasks (an easy image, a hard image) is shared.
* :func:`format_ci` — ``"16.65 ± 0.21"``.
* :func:`choose` — the value of a grid with the best validation score (a baseline's step size, a rate).

Inputs may be NumPy arrays or torch tensors; results are NumPy arrays or floats.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

from .errors import ConfigError, DataError


def _numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def psnr(pred, target, mask=None, max_value: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB, one value per image: 10 log10(max_value² / MSE).

    pred, target: ``[N, ...]`` (N images of any shape, e.g. ``[N, 1, 28, 28]`` or ``[N, 784]``).
    mask: None (every pixel) or booleans of ``target``'s shape (or broadcastable to it); the MSE of an
    image is the mean over its True pixels only. Returns ``[N]``; a perfect match gives ``inf``.
    """
    pred, target = _numpy(pred), _numpy(target)
    if pred.shape != target.shape or pred.ndim < 1:
        raise DataError(f"psnr: pred has shape {pred.shape} but target has {target.shape}; expected the same "
                        "shape [N, ...] with one image per leading index")
    if not (math.isfinite(max_value) and max_value > 0):
        raise ConfigError(f"psnr: max_value={max_value!r}; expected a finite number > 0")
    weights = np.ones_like(target) if mask is None else np.broadcast_to(_numpy(mask) != 0, target.shape)
    weights = weights.reshape(len(target), -1).astype(np.float64)
    counts = weights.sum(axis=1)
    if (counts == 0).any():
        raise DataError(f"psnr: the mask selects no pixel of image(s) {np.flatnonzero(counts == 0)[:5].tolist()}")
    squared = ((pred - target) ** 2).reshape(len(target), -1)
    mse = (squared * weights).sum(axis=1) / counts
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(max_value ** 2 / mse)


def mean_ci(values, level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the ``level`` confidence interval of the mean of ``values`` ``[n]``.

    The half-width is t_{(1+level)/2, n−1} · s / √n with s the sample standard deviation (ddof = 1): the
    interval for a mean of n independent values with unknown variance.
    """
    values = _numpy(values).ravel()
    if not 0 < level < 1:
        raise ConfigError(f"mean_ci: level={level!r}; expected a number strictly between 0 and 1, e.g. 0.95")
    if len(values) < 2:
        raise DataError(f"mean_ci: found {len(values)} value(s); a confidence interval needs at least 2")
    if not np.isfinite(values).all():
        raise DataError(f"mean_ci: {int((~np.isfinite(values)).sum())} of {len(values)} values are not finite")
    n = len(values)
    half = stats.t.ppf(0.5 + level / 2, df=n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean()), float(half)


def paired_difference(a, b, level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the confidence interval of the mean of ``a − b``, where ``a[i]`` and ``b[i]``
    are two methods' scores on the same task i. a, b: ``[n]``."""
    a, b = _numpy(a), _numpy(b)
    if a.shape != b.shape:
        raise DataError(f"paired_difference: a has shape {a.shape} but b has {b.shape}; a paired comparison "
                        "needs one score per method for each of the same tasks")
    return mean_ci(a - b, level)


def clear_sign(interval: tuple[float, float]) -> int:
    """The sign of a (difference, half-width) interval that excludes zero: +1 or −1; 0 when it contains
    zero (the tasks cannot tell the two methods apart).

    >>> [clear_sign(d) for d in ((0.2, 0.1), (-0.2, 0.1), (0.05, 0.1))]
    [1, -1, 0]
    """
    difference, half_width = interval
    return int(np.sign(difference)) if abs(difference) > half_width else 0


def format_ci(mean: float | tuple[float, float], half_width: float | None = None, decimals: int = 2) -> str:
    """``"16.65 ± 0.21"``. Pass ``(mean, half_width)`` as two numbers or as the tuple :func:`mean_ci` returns."""
    if half_width is None:
        mean, half_width = mean
    return f"{mean:.{decimals}f} ± {half_width:.{decimals}f}"


def choose(grid: Sequence[float], score: Callable[[float], float]) -> tuple[float, dict[float, float]]:
    """The value of ``grid`` with the highest ``score`` (e.g. mean validation PSNR, or minus a loss), and every score.
    A non-finite score (a diverging step size) never wins."""
    scores = {value: float(score(value)) for value in grid}
    finite = {v: s for v, s in scores.items() if np.isfinite(s)}
    if not finite:
        raise ConfigError(f"choose: every value of {list(grid)} scored non-finite {scores}")
    return max(finite, key=finite.get), scores
