"""Learned update rules for the linear meta-parameter network (notebook 03).

Notebook 02 shows that with shared linear features the best *initialisation* θ₀ is the mean-image fit:
the closed form θ_k = θ* + (I − αA)^k (θ₀ − θ*) leaves little for θ₀ to do. What k steps can reach
depends on the *update*, so here the update itself is meta-learned:

    θ_{j+1} = θ_j − M_j ∇L_support(θ_j),     ∇L = A θ − c  (A = (2/n) X̃_oᵀX̃_o, c = (2/n) X̃_oᵀ y_o)

with M_j a learned preconditioner of one of these forms (P = F + 1 parameters):

* ``"scalar"``     M = α I, α learned                   (MAML with a learned rate)
* ``"diagonal"``   M = diag(α), one rate per parameter   (Meta-SGD, Li et al. 2017)
* ``"lowrank"``    M = diag(α) + U Uᵀ, U ``[P, rank]``   (Meta-Curvature style, Park & Oliva 2019)
* ``"full"``       M = L Lᵀ, L ``[P, P]``                (a full learned preconditioner)

``per_step=True`` learns one M_j per inner step (as MAML++ learns per-step rates). θ₀ is learned too.
Every M here is positive semi-definite, so each step is a descent direction; whether k steps converge
still depends on M's scale against A's spectrum, which is what makes large Fourier scales unstable
(notebook 03 shows it).

Shapes: design X̃ ``[tasks, n, P]``, targets ``[tasks, n]``, θ ``[tasks, P]``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .tasks import CompletionTasks, make_tasks, normal_equations, with_bias
from ..config import progress_disabled
from ..data.images import ImageSet
from ..errors import ConfigError, MetaLearningError
from ..kernels import clip_grad_norm

KINDS = ("scalar", "diagonal", "lowrank", "full")


def init_rule(theta0: Tensor, kind: str, lr: float, steps: int, per_step: bool = False, rank: int = 16,
              seed: int = 0) -> dict[str, Tensor]:
    """Learnable parameters of an update rule, starting as plain gradient descent at rate ``lr`` from θ₀.

    Rates are stored as square roots (M = s² or L Lᵀ), so M stays positive semi-definite whatever the
    outer optimiser does.
    """
    if kind not in KINDS:
        raise ConfigError(f"kind={kind!r} is not valid; expected one of {KINDS}")
    if not lr > 0:
        raise ConfigError(f"lr={lr!r} is not valid; expected a positive inner learning rate")
    p, copies = theta0.numel(), (steps if per_step else 1)
    root = torch.full((copies,), lr ** 0.5, dtype=theta0.dtype)
    rule = {"theta0": theta0.detach().clone()}
    if kind == "scalar":
        rule["sqrt_rate"] = root
    elif kind in ("diagonal", "lowrank"):
        rule["sqrt_rate"] = root[:, None].repeat(1, p)
        if kind == "lowrank":
            g = torch.Generator().manual_seed(seed)
            rule["U"] = 1e-3 * torch.randn(copies, p, rank, generator=g, dtype=theta0.dtype)
    else:
        rule["L"] = root[:, None, None] * torch.eye(p, dtype=theta0.dtype).repeat(copies, 1, 1)
    return {name: t.requires_grad_(True) for name, t in rule.items()}


def _at_step(rule: dict[str, Tensor], step: int) -> dict[str, Tensor]:
    """The tensors that make M for inner step ``step`` (θ₀ left out): a shared M has one copy of each,
    a per-step M one per step."""
    return {name: t[min(step, len(t) - 1)] for name, t in rule.items() if name != "theta0"}


def precondition(rule: dict[str, Tensor], step: int, grad: Tensor) -> Tensor:
    """M_step applied to gradients ``[tasks, P]`` (M is symmetric, so g M = (M g)ᵀ)."""
    m = _at_step(rule, step)
    if "L" in m:
        return (grad @ m["L"]) @ m["L"].T
    out = grad * m["sqrt_rate"] ** 2
    if "U" in m:
        out = out + (grad @ m["U"]) @ m["U"].T
    return out


def predict(design: Tensor, theta: Tensor) -> Tensor:
    """X̃θ per task: design ``[tasks, n, P]``, θ ``[tasks, P]`` → ``[tasks, n]``.

    Written as a row vector times a matrix, θᵀX̃ᵀ: on the CPU a batched vector-matrix product runs
    about 7× faster than the batched matrix-vector product X̃θ (or einsum, which becomes one)."""
    return (theta[:, None, :] @ design.transpose(1, 2))[:, 0]


def adapt(rule: dict[str, Tensor], design: Tensor, targets: Tensor, steps: int) -> list[Tensor]:
    """θ after 0, 1, …, ``steps`` learned updates on each task's support: a list of ``[tasks, P]``."""
    n = design.shape[1]
    theta = rule["theta0"].expand(design.shape[0], -1)
    path = [theta]
    for step in range(steps):
        residual = predict(design, theta) - targets
        grad = (2.0 / n) * (residual[:, None, :] @ design)[:, 0]
        theta = theta - precondition(rule, step, grad)
        path.append(theta)
    return path


def _support_and_query(features: Tensor, tasks: CompletionTasks, query_pixels: int | None = None):
    design = with_bias(features.to(tasks.pixels.dtype))
    query = tasks.unobserved if query_pixels is None else tasks.unobserved[:, :query_pixels]
    return (design[tasks.observed], tasks.pixels.gather(1, tasks.observed),
            design[query], tasks.pixels.gather(1, query))


def meta_loss(rule: dict[str, Tensor], features: Tensor, tasks: CompletionTasks, steps: int,
              query_pixels: int | None = None) -> Tensor:
    """Mean query MSE after each of the ``steps`` updates, averaged over steps and tasks (so the rule is
    good at every k up to ``steps``, not only the last)."""
    xs, ys, xq, yq = _support_and_query(features, tasks, query_pixels)
    path = adapt(rule, xs, ys, steps)
    losses = [((predict(xq, theta) - yq) ** 2).mean() for theta in path[1:]]
    return torch.stack(losses).mean()


def exact_maml_init(features: Tensor, tasks: CompletionTasks, lr: float, steps: int,
                    query_pixels: int | None = None, ridge: float = 1e-8, chunk: int = 32) -> Tensor:
    """θ₀ ``[P]`` that minimises MAML's objective on ``tasks`` exactly: the query MSE (all unobserved
    pixels, or a random ``query_pixels`` of them) after ``steps`` plain gradient steps at rate ``lr`` on
    the observed ones, summed over tasks.

    Here k steps are affine in θ₀: θ_k = M_t θ₀ + b_t with M_t = (I − αA_t)^k and b_t the k-step result
    from θ₀ = 0 (notebook 02's closed form). So the objective Σ_t ‖X̃_q (M_t θ₀ + b_t) − y_q‖² / n_q is
    linear least squares in θ₀, solved through its normal equations — its global minimum, where
    stochastic meta-training could be blamed for stopping short. (``ridge`` only guards the solve.)
    """
    xs, ys, xq, yq = _support_and_query(features, tasks, query_pixels)
    p = xs.shape[-1]
    eye = torch.eye(p, dtype=xs.dtype, device=xs.device)
    gram, rhs = torch.zeros_like(eye), torch.zeros(p, dtype=xs.dtype, device=xs.device)
    zero = {"theta0": torch.zeros(p, dtype=xs.dtype, device=xs.device),
            "sqrt_rate": torch.tensor([lr ** 0.5], dtype=xs.dtype, device=xs.device)}
    for start in range(0, len(xs), chunk):
        part = slice(start, start + chunk)
        # X̃_q M_t, one factor (I − αA_t) at a time, with A_t = (2 / n_s) X̃_sᵀ X̃_s kept factored: products
        # with the [n, P] designs only. Eigendecomposing each [P, P] A_t took twice as long.
        rows = xq[part]                                                            # [c, n_q, P]
        for _ in range(steps):
            rows = rows - (2.0 * lr / xs.shape[1]) * (rows @ xs[part].transpose(1, 2)) @ xs[part]
        b = adapt(zero, xs[part], ys[part], steps)[-1]                             # [c, P]
        flat = rows.reshape(-1, p)                     # every task's rows stacked: one [P, P] product
        gram += flat.T @ flat / xq.shape[1]
        rhs += flat.T @ (yq[part] - predict(xq[part], b)).reshape(-1) / xq.shape[1]
    scale = gram.diagonal().mean()
    return torch.cholesky_solve(rhs[:, None], torch.linalg.cholesky(gram + ridge * scale * eye))[:, 0]


def train_rule(features: Tensor, images: ImageSet, rule: dict[str, Tensor], steps: int, inner_steps: int,
               meta_batch_size: int = 32, outer_lr: float = 3e-3, max_grad_norm: float | None = 1.0,
               observed: float = 0.25, query_pixels: int | None = 196, seed: int = 0,
               progress: bool = True) -> np.ndarray:
    """Meta-train an update rule in place (Adam, cosine decay, gradient clipping) on fresh background tasks
    every step; returns the meta-loss per step. A non-finite loss is an error naming the step."""
    from tqdm.auto import tqdm

    optimizer = torch.optim.Adam(rule.values(), lr=outer_lr, fused=True)   # fused: see kernels.sqrt
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    losses = np.empty(steps)
    dtype = rule["theta0"].dtype
    for step in tqdm(range(steps), desc="meta-training the update", disable=not progress or progress_disabled(),
                     leave=False):
        tasks = make_tasks(images, meta_batch_size, observed, seed=(seed, step), one_per_class=False, dtype=dtype)
        loss = meta_loss(rule, features.to(dtype), tasks, inner_steps, query_pixels)
        if not torch.isfinite(loss):
            raise MetaLearningError(f"meta-training step {step}: the query loss is {loss.item()}; the learned "
                                    "update diverged (lower outer_lr, clip gradients, or shrink the rates)")
        optimizer.zero_grad()
        loss.backward()
        if max_grad_norm is not None:
            clip_grad_norm(rule.values(), max_grad_norm)
        optimizer.step()
        schedule.step()
        losses[step] = loss.item()
    return losses


@torch.no_grad()
def complete(rule: dict[str, Tensor], features: Tensor, tasks: CompletionTasks,
             ks: Sequence[int] = (0, 1, 2, 5, 10), chunk: int = 50) -> Tensor:
    """Whole images generated after each k in ``ks`` learned updates: ``[len(ks), tasks, D]``.

    A rule trained for fewer steps than max(ks) reuses its last M for the extra steps."""
    design = with_bias(features.to(tasks.pixels.dtype))
    rule = {k: v.to(tasks.pixels.dtype) for k, v in rule.items()}
    out = []
    for start in range(0, len(tasks), chunk):
        part = tasks.select(slice(start, start + chunk))
        path = adapt(rule, design[part.observed], part.pixels.gather(1, part.observed), max(ks))
        out.append(torch.stack([path[k] @ design.T for k in ks]))
    return torch.cat(out, dim=1)


def _square_root(rule: dict[str, Tensor], step: int) -> Tensor | None:
    """R with M_step = R Rᵀ for the scalar, diagonal and full rules (None for low rank)."""
    m = _at_step(rule, step)
    if "L" in m:
        return m["L"]
    if "U" in m:
        return None
    p = rule["theta0"].numel()
    return torch.diag(m["sqrt_rate"].expand(p).to(rule["theta0"].dtype))


def step_eigenvalues(rule: dict[str, Tensor], features: Tensor, tasks: CompletionTasks, step: int = 0) -> list[Tensor]:
    """The eigenvalues μ of M A per task, on the directions the support data reaches (A's range). Along
    each, one step multiplies the error by 1 − μ: it shrinks for 0 < μ < 2 and grows beyond 2."""
    features = features.to(tasks.pixels.dtype)
    rule = {k: v.detach().to(tasks.pixels.dtype) for k, v in rule.items()}
    root = _square_root(rule, step)
    out = []
    with torch.no_grad():
        for t in range(len(tasks)):
            A, _ = normal_equations(features[tasks.observed[t]], tasks.pixels[t, tasks.observed[t]])
            if root is None:   # low rank: M has no handy square root; the spectrum of A M is that of M A
                mu = torch.linalg.eigvals(precondition(rule, step, A))
            else:              # M = R Rᵀ, so M A has the spectrum of the symmetric Rᵀ A R: eigvalsh, fast
                mu = torch.linalg.eigvalsh(root.T @ A @ root)
            out.append(mu[mu.abs() > 1e-8 * mu.abs().max()])
    return out
