"""Meta-learning on any ``nn.Module``: one functional inner loop for MAML, first-order MAML, Reptile and
Meta-SGD, with per-step learned rates (MAML++), the multi-step loss, and adapting only some parameters.

Parameters live in a dict ``name → tensor`` and the module is run with ``torch.func.functional_call``,
so one set of weights per task is just another dict. The meta-parameters are the module's own
parameters (the same tensors, so an optimizer step updates the module) plus, for Meta-SGD or per-step
rates, learned inner learning rates stored under ``"inner_lr.<name>"``.

Two paths compute the same numbers, and the tests hold them to it:

* ``vectorised=True`` runs all tasks at once with ``torch.func.vmap``; the inner gradient is
  ``torch.func.grad_and_value``, whose result stays differentiable by ordinary autograd outside the
  vmap, so ``torch.autograd.grad`` of the meta-loss is the full second-order MAML gradient.
* ``vectorised=False`` loops over tasks in Python with ``torch.autograd.grad(create_graph=True)``:
  the textbook form, and the reference the vectorised path is checked against.

Every loss is a mean over one task's examples and the meta-loss a mean over tasks, so nothing depends on
the meta-batch size. A non-finite loss stops training with a :class:`MetaLearningError` that names the
task and the inner step.

One module of about 450 lines: the inner loop, the rates, the batch checks and the outer losses share
private helpers (``_inner_loop``, ``_rate_shape``, ``_check_batch``) that no other module should see.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from ..errors import ConfigError, DataError, MetagenError, MetaLearningError
from ..kernels import clip_grad_norm, sqrt

ALGORITHMS = ("maml", "fomaml", "reptile", "metasgd")
LR_PREFIX = "inner_lr."

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
Rate = float | Tensor | dict[str, Tensor | float]
# A model's call arguments for one task: one tensor, a tuple of them (functional_call takes a tuple), or a
# function of the inner step giving them (fresh noise at every step).
Inputs = Tensor | tuple[Tensor, ...] | Callable[[int], Tensor | tuple[Tensor, ...]]
# Adam's constants for optimizer="adam": torch.optim.Adam's defaults β₁ = 0.9, β₂ = 0.999, ε = 1e-8. The
# moments mix in 0.1 and 0.001 of the new gradient, written as those decimals (1 − 0.9 in floating point
# is 0.09999999999999998).
ADAM = {"beta1": 0.9, "mix1": 0.1, "beta2": 0.999, "mix2": 0.001, "eps": 1e-8}


@dataclass(frozen=True)
class MetaConfig:
    """How the inner loop adapts and what the outer loop learns.

    algorithm: ``"maml"`` (second order), ``"fomaml"`` (first order: inner gradients are constants),
    ``"reptile"`` (outer direction θ − θ_adapted) or ``"metasgd"`` (second order, with a learned rate
    per parameter element).
    per_step_lr: learn one rate per inner step (per parameter tensor, or per element for Meta-SGD),
    as in MAML++'s LSLR; the rates start at ``inner_lr``.
    multi_step_loss: the outer loss is the mean of the query losses after every inner step (MAML++).
    adapt: ``"all"``, or parameter-name prefixes (``("net.4",)``, ``("context",)``): only those adapt per
    task; the others are shared and learned by the outer loop only.
    """

    algorithm: str = "maml"
    inner_steps: int = 1
    inner_lr: float = 0.1
    per_step_lr: bool = False
    multi_step_loss: bool = False
    adapt: str | tuple[str, ...] = "all"

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm={self.algorithm!r} is not valid; expected one of {ALGORITHMS}")
        if not isinstance(self.inner_steps, int) or self.inner_steps < 1:
            raise ConfigError(f"inner_steps={self.inner_steps!r} is not valid; expected an integer ≥ 1")
        if not (isinstance(self.inner_lr, (int, float)) and math.isfinite(self.inner_lr) and self.inner_lr > 0):
            raise ConfigError(f"inner_lr={self.inner_lr!r} is not valid; expected a finite number > 0")
        if isinstance(self.adapt, list):
            object.__setattr__(self, "adapt", tuple(self.adapt))
        if self.adapt != "all" and not (isinstance(self.adapt, tuple) and self.adapt
                                        and all(isinstance(p, str) for p in self.adapt)):
            raise ConfigError(f"adapt={self.adapt!r} is not valid; expected 'all' or a non-empty tuple of "
                              "parameter-name prefixes such as ('context',)")
        if self.algorithm == "reptile" and (self.per_step_lr or self.multi_step_loss):
            raise ConfigError("algorithm='reptile' has no outer loss to learn inner rates or weight steps "
                              "with; use per_step_lr=False and multi_step_loss=False, or algorithm='maml'")

    @property
    def first_order(self) -> bool:
        """Whether the inner gradients are treated as constants (no backpropagation through them)."""
        return self.algorithm in ("fomaml", "reptile")

    @property
    def learns_inner_lr(self) -> bool:
        return self.algorithm == "metasgd" or self.per_step_lr


class TaskBatch(NamedTuple):
    """A meta-batch. support_x/support_y: ``[tasks, k_shot, ...]``; query_x/query_y: ``[tasks, n_query, ...]``.
    For a model whose forward takes several arguments, support_x and query_x are tuples of such tensors.

    For a coordinate network x is pixel coordinates ``[tasks, k, 2]`` and y their values ``[tasks, k, C]``;
    for a generator x is latent codes ``[tasks, k, latent_dim]`` and y images ``[tasks, k, C, H, W]``.
    """

    support_x: Tensor | tuple[Tensor, ...]
    support_y: Tensor
    query_x: Tensor | tuple[Tensor, ...]
    query_y: Tensor


def params_of(module: nn.Module) -> Params:
    """The module's parameters as a dict name → tensor (the same tensors, not copies)."""
    return dict(module.named_parameters())


def select_adapted(names: Sequence[str], adapt: str | tuple[str, ...],
                   module: nn.Module | None = None) -> tuple[str, ...]:
    """The names that adapt per task: all of them, or those equal to or under one of the prefixes.

    With ``adapt="all"`` and the ``module``, a parameter the module freezes (``requires_grad=False``)
    stays frozen: it adapts only when a prefix names it.
    """
    if adapt == "all":
        frozen = set() if module is None else {n for n, p in module.named_parameters() if not p.requires_grad}
        return tuple(n for n in names if n not in frozen)
    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")
    for prefix in adapt:
        if not any(under(n, prefix) for n in names):
            raise ConfigError(f"adapt: {prefix!r} matches no parameter; the parameters are {list(names)}")
    return tuple(n for n in names if any(under(n, p) for p in adapt))


def init_meta_params(module: nn.Module, cfg: MetaConfig) -> Params:
    """Everything the outer loop learns: the module's parameters and, where ``cfg`` learns them, the
    inner rates ``"inner_lr.<name>"`` — shape ``[]`` per tensor (per-step: ``[inner_steps]``), or the
    parameter's shape for Meta-SGD (per-step: ``[inner_steps, *shape]``) — all starting at ``inner_lr``."""
    params = params_of(module)
    clashing = [n for n in params if n.startswith(LR_PREFIX)]
    if clashing:
        raise ConfigError(f"parameter(s) {clashing} clash with the learned-rate prefix {LR_PREFIX!r}; rename "
                          "the submodule")
    rates = {}
    if cfg.learns_inner_lr:
        for name in select_adapted(list(params), cfg.adapt, module):
            p = params[name]
            rates[LR_PREFIX + name] = torch.full(_rate_shape(cfg, p), float(cfg.inner_lr), dtype=p.dtype,
                                                 device=p.device, requires_grad=True)
    return {**params, **rates}


def _rate_shape(cfg: MetaConfig, p: Tensor) -> tuple[int, ...]:
    shape = tuple(p.shape) if cfg.algorithm == "metasgd" else ()
    return (cfg.inner_steps, *shape) if cfg.per_step_lr else shape


def inner_rates(cfg: MetaConfig, meta_params: Params, names: Sequence[str], steps: int | None = None) -> list[Rate]:
    """The rate of each of ``steps`` inner steps (default ``cfg.inner_steps``), as :func:`inner_loop`'s
    ``lr`` takes it: ``cfg.inner_lr``, or dicts of the learned ``"inner_lr.<name>"`` rates in
    ``meta_params`` (one per step where ``cfg.per_step_lr``, which fixes the number of steps)."""
    steps = cfg.inner_steps if steps is None else steps
    if cfg.per_step_lr and steps != cfg.inner_steps:
        raise ConfigError(f"steps={steps}, but the rates were learned per step for inner_steps={cfg.inner_steps}")
    if not cfg.learns_inner_lr:
        return [cfg.inner_lr] * steps
    rates = {}
    for name in names:
        key, expected = LR_PREFIX + name, _rate_shape(cfg, meta_params[name])
        if key not in meta_params or tuple(meta_params[key].shape) != expected:
            found = tuple(meta_params[key].shape) if key in meta_params else "nothing"
            raise ConfigError(f"meta_params[{key!r}]: found {found}, expected a rate of shape {expected} for "
                              f"this config; build meta_params with init_meta_params(module, cfg)")
        rates[name] = meta_params[key]
    if cfg.per_step_lr:
        return [{n: r[step] for n, r in rates.items()} for step in range(steps)]
    return [rates] * steps


def _inner_loop(module: nn.Module, params: Params, names: Sequence[str], schedule: Sequence[Rate],
                support_x: Inputs, support_y: Tensor | None, loss_fn: LossFn, create_graph: bool,
                functional: bool, optimizer: str = "sgd") -> tuple[list[Params], Tensor]:
    """Gradient descent (or Adam) on one task's support loss. Returns the adapted parameters (``names``
    only) after each step and the support loss ``[steps]`` each step descended (detached, for the
    finiteness check)."""
    shared = {n: t for n, t in params.items() if n not in names}
    adapted = {n: params[n] for n in names}
    step = 0

    def support_loss(adapted: Params, shared: Params) -> Tensor:
        inputs = support_x(step) if callable(support_x) else support_x
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        return loss_fn(functional_call(module, {**shared, **adapted}, inputs), support_y)

    def gradient(adapted: Params, shared: Params = shared) -> tuple[Params, Tensor]:
        if functional:
            return grad_and_value(support_loss)(adapted, shared)
        loss = support_loss(adapted, shared)
        found = torch.autograd.grad(loss, list(adapted.values()), create_graph=create_graph, allow_unused=True)
        return {n: torch.zeros_like(t) if g is None else g for (n, t), g in zip(adapted.items(), found)}, loss

    def rate_of(rate: Rate, name: str) -> Tensor | float:
        return rate[name] if isinstance(rate, dict) else rate

    trajectory, losses = [], []
    if optimizer == "adam":   # per task from zero moments, torch.optim.Adam's update written out
        moment, square = ({n: torch.zeros_like(t) for n, t in adapted.items()} for _ in range(2))
        for step, rate in enumerate(schedule):
            grads, loss = gradient(adapted)
            if not create_graph:
                grads = {n: g.detach() for n, g in grads.items()}
            t = step + 1
            moment = {n: ADAM["beta1"] * moment[n] + ADAM["mix1"] * grads[n] for n in names}
            square = {n: ADAM["beta2"] * square[n] + ADAM["mix2"] * grads[n] ** 2 for n in names}
            adapted = {n: adapted[n] - rate_of(rate, n) * (moment[n] / (1 - ADAM["beta1"] ** t))
                    / (sqrt(square[n] / (1 - ADAM["beta2"] ** t)) + ADAM["eps"]) for n in names}
            trajectory.append(adapted)
            losses.append(loss.detach())
        return trajectory, torch.stack(losses)
    if create_graph:
        if not functional:   # autograd.grad needs tensors in a graph: callers may pass detached θ
            adapted = {n: t if t.requires_grad else t.detach().requires_grad_() for n, t in adapted.items()}
        for step, rate in enumerate(schedule):
            grads, loss = gradient(adapted)
            adapted = {n: adapted[n] - rate_of(rate, n) * grads[n] for n in names}
            trajectory.append(adapted)
            losses.append(loss.detach())
        return trajectory, torch.stack(losses)
    # First order: the inner gradients are constants, so descend on detached weights (the outer autograd
    # records none of the inner forward and backward passes) and attach each step's weights to θ and the
    # learned rates through terms that are exactly zero but carry their gradients:
    #     θ_j = walk_j + (θ − sg θ) − Σ_{i<j} (α_i − sg α_i) ⊙ g_i,   sg = stop-gradient,
    # the same numbers as walk_j, and the derivatives of θ − Σ α_i ⊙ g_i with the g_i held constant.
    walk, constant = {n: t.detach() for n, t in adapted.items()}, {n: t.detach() for n, t in shared.items()}
    attach = {n: t - t.detach() for n, t in adapted.items()}
    for step, rate in enumerate(schedule):
        if not functional:   # autograd.grad needs leaves that require grad
            walk = {n: t.detach().requires_grad_() for n, t in walk.items()}
        grads, loss = gradient(walk, constant)
        grads = {n: g.detach() for n, g in grads.items()}
        walk = {n: walk[n].detach() - _detached(rate_of(rate, n)) * grads[n] for n in names}
        for n in names:
            learned = rate_of(rate, n)
            if isinstance(learned, Tensor) and learned.requires_grad:
                attach[n] = attach[n] - (learned - learned.detach()) * grads[n]
        trajectory.append({n: walk[n] + attach[n] for n in names})
        losses.append(loss.detach())
    return trajectory, torch.stack(losses)


def _detached(rate: Tensor | float) -> Tensor | float:
    return rate.detach() if isinstance(rate, Tensor) else rate


def inner_loop(module: nn.Module, params: Params, support_x: Inputs, support_y: Tensor | None, loss_fn: LossFn,
               steps: int = 1, lr: Rate | Sequence[Rate] = 0.1, create_graph: bool = True,
               adapt: str | Sequence[str] = "all", optimizer: str = "sgd") -> Params:
    """Adapt ``params`` to one task: ``steps`` steps of gradient descent on
    ``loss_fn(module(*support_x), support_y)``; the kit's one inner loop, for every model and notebook.

    support_x: the model's call arguments, ``[k_shot, ...]`` (one tensor, a tuple, or a function of the
    step giving them). lr: a number, a dict name → rate (a scalar or a tensor of the parameter's shape:
    Meta-SGD), or a sequence of those, one per step (:func:`inner_rates` reads the learned ones).
    ``create_graph=True`` keeps the graph through the inner gradients (second-order MAML); False treats them
    as constants (first order). ``optimizer="adam"`` takes Adam steps from zero moments instead (rate
    ``lr``; the fine-tuning baselines). Returns the whole dict with the ``adapt``-selected entries replaced
    by their adapted values. Written with ``torch.func``, so it runs under ``vmap`` over tasks.

    Example (three steps on a linear model; ``θ`` stays differentiable)::

        net = torch.nn.Linear(4, 1)
        θ = inner_loop(net, dict(net.named_parameters()), x, y, F.mse_loss, steps=3, lr=0.1)
        loss = F.mse_loss(functional_call(net, θ, (x_query,)), y_query)
    """
    if optimizer not in ("sgd", "adam"):
        raise ConfigError(f"optimizer={optimizer!r} is not valid; expected 'sgd' or 'adam'")
    schedule = list(lr) if isinstance(lr, (list, tuple)) else [lr] * steps
    if len(schedule) != steps:
        raise ConfigError(f"lr: {len(schedule)} per-step rates given for steps={steps}")
    names = select_adapted(list(params), adapt if adapt == "all" else tuple(adapt), module)
    with torch.enable_grad():
        trajectory, _ = _inner_loop(module, params, names, schedule, support_x, support_y, loss_fn,
                                    create_graph, functional=True, optimizer=optimizer)
    return {**params, **trajectory[-1]}


def check_vectorisable(module: nn.Module) -> None:
    """Raise MetaLearningError if ``module`` has layers that update buffers in ``forward``, which the
    vmapped path cannot run (one buffer would be written by every task at once)."""
    for name, sub in module.named_modules():
        if getattr(sub, "track_running_stats", False) and getattr(sub, "running_mean", None) is not None:
            raise MetaLearningError(
                f"{type(sub).__name__} at {name or type(module).__name__!r} tracks running statistics, which "
                "forward overwrites, so it cannot run per task under torch.func.vmap. Use GroupNorm or "
                "LayerNorm, or track_running_stats=False, or pass vectorised=False to loop over tasks")


def _lead(x: Tensor | tuple[Tensor, ...]) -> Tensor:
    """The tensor whose shape stands for an input: itself, or a tuple's first (the rest share its
    task and example dimensions)."""
    return x[0] if isinstance(x, tuple) else x


def _check_batch(task_batch: Sequence[Tensor | tuple[Tensor, ...]]) -> TaskBatch:
    if len(task_batch) != 4:
        raise DataError(f"task_batch: found {len(task_batch)} tensors, expected 4 "
                        "(support_x, support_y, query_x, query_y)")
    for field, t in zip(TaskBatch._fields, task_batch):
        parts = t if isinstance(t, tuple) and field.endswith("_x") else (t,)
        if not parts or not all(isinstance(p, Tensor) for p in parts):
            raise DataError(f"task_batch: {field} is a {type(t).__name__}, expected a tensor [tasks, examples, "
                            "...] (or, for a model of several arguments, a tuple of them); stack the tasks "
                            "with torch.stack (every task needs the same number of examples)")
        if len({tuple(p.shape[:2]) for p in parts}) != 1:
            raise DataError(f"task_batch: the tensors of {field} differ in [tasks, examples]: "
                            f"{[tuple(p.shape) for p in parts]}")
    batch = TaskBatch(*task_batch)
    shapes = {field: tuple(_lead(t).shape) for field, t in batch._asdict().items()}
    if len({s[0] if s else None for s in shapes.values()}) != 1 or _lead(batch.support_x).ndim < 2:
        raise DataError(f"task_batch: every tensor must be [tasks, examples, ...] with the same number of "
                        f"tasks; found {shapes}")
    for x, y in (("support_x", "support_y"), ("query_x", "query_y")):
        if shapes[x][1] != shapes[y][1]:
            raise DataError(f"task_batch: {x} has {shapes[x][1]} examples per task but {y} has {shapes[y][1]}")
    return batch


def _check_finite(support: Tensor, query: Tensor, cfg: MetaConfig) -> None:
    """support: ``[tasks, steps]``; query: ``[tasks, steps or 1]`` — raise on the first non-finite loss."""
    where = f"algorithm={cfg.algorithm!r}, inner_lr={cfg.inner_lr}, inner_steps={cfg.inner_steps}"
    bad = (~torch.isfinite(support)).nonzero()
    if len(bad):
        task, step = bad[0].tolist()
        raise MetaLearningError(
            f"the support loss of task {task} is {support[task, step].item()} at inner step {step + 1} of "
            f"{cfg.inner_steps} ({where}): check task {task}'s data for NaN/inf, or lower inner_lr")
    bad = (~torch.isfinite(query)).nonzero()
    if len(bad):
        task, col = bad[0].tolist()
        step = col + 1 if cfg.multi_step_loss else cfg.inner_steps
        raise MetaLearningError(
            f"the query loss of task {task} is {query[task, col].item()} after inner step {step} of "
            f"{cfg.inner_steps} ({where}): the inner loop diverged; lower inner_lr or inner_steps")


def _task_losses(module: nn.Module, meta_params: Params, task_batch: Sequence[Tensor], cfg: MetaConfig,
                 loss_fn: LossFn, vectorised: bool) -> tuple[Tensor, Params]:
    """Adapt to every task; returns the outer loss per task ``[tasks]`` and the adapted parameters
    ``{name: [tasks, *shape]}``."""
    batch = _check_batch(task_batch)
    names = select_adapted([n for n in meta_params if not n.startswith(LR_PREFIX)], cfg.adapt, module)

    def one_task(meta_params: Params, support_x: Tensor, support_y: Tensor, query_x: Tensor,
                 query_y: Tensor) -> tuple[Tensor, Tensor, Tensor, Params]:
        params = {n: t for n, t in meta_params.items() if not n.startswith(LR_PREFIX)}
        trajectory, support = _inner_loop(module, params, names, inner_rates(cfg, meta_params, names),
                                          support_x, support_y, loss_fn, not cfg.first_order, vectorised)
        scored = trajectory if cfg.multi_step_loss else trajectory[-1:]
        inputs = query_x if isinstance(query_x, tuple) else (query_x,)
        query = torch.stack([loss_fn(functional_call(module, {**params, **adapted}, inputs), query_y)
                             for adapted in scored])
        return query.mean(), support, query.detach(), trajectory[-1]

    if vectorised:
        check_vectorisable(module)
        try:
            outer, support, query, adapted = vmap(one_task, in_dims=(None, 0, 0, 0, 0))(meta_params, *batch)
        except RuntimeError as error:
            if isinstance(error, MetagenError):
                raise
            raise MetaLearningError(
                f"the vectorised (torch.func.vmap) meta-loss failed on {type(module).__name__}: {error}. "
                "Modules that write buffers in forward, use dropout, or branch on tensor values cannot be "
                "vmapped; pass vectorised=False to loop over tasks") from error
    else:
        def task(t: Tensor | tuple[Tensor, ...], i: int) -> Tensor | tuple[Tensor, ...]:
            return tuple(p[i] for p in t) if isinstance(t, tuple) else t[i]
        results = [one_task(meta_params, *(task(t, i) for t in batch)) for i in range(len(_lead(batch.support_x)))]
        outer, support, query = (torch.stack([r[j] for r in results]) for j in range(3))
        adapted = {n: torch.stack([r[3][n] for r in results]) for n in names}
    _check_finite(support, query, cfg)
    return outer, adapted


def meta_loss(module: nn.Module, meta_params: Params, task_batch: Sequence[Tensor], cfg: MetaConfig,
              loss_fn: LossFn, vectorised: bool = True) -> Tensor:
    """The MAML-family outer loss: the query loss after adapting to each task, averaged over tasks
    (and over inner steps with ``multi_step_loss``). Differentiable with respect to ``meta_params``.

    Reptile has no such loss (its outer direction is not a gradient); use :func:`meta_gradient`.
    """
    if cfg.algorithm == "reptile":
        raise ConfigError("algorithm='reptile' has no outer loss whose gradient is its update; use "
                          "meta_gradient(), which returns θ − θ_adapted averaged over tasks")
    with torch.enable_grad():
        return _task_losses(module, meta_params, task_batch, cfg, loss_fn, vectorised)[0].mean()


def meta_gradient(module: nn.Module, meta_params: Params, task_batch: Sequence[Tensor], cfg: MetaConfig,
                  loss_fn: LossFn, vectorised: bool = True) -> tuple[Tensor, Params]:
    """Returns (meta-loss, {name: outer gradient}) for every meta-parameter that requires grad.

    For Reptile the "gradient" is the Reptile direction θ − mean over tasks of θ_adapted (zero for shared
    parameters), so SGD with rate ε gives θ ← θ + ε (θ̄_adapted − θ); the loss is the mean query loss after
    adaptation, for monitoring. Gradients are means over tasks.
    """
    with torch.enable_grad():
        if cfg.algorithm == "reptile":
            frozen = {n: t.detach() for n, t in meta_params.items()}
            outer, adapted = _task_losses(module, frozen, task_batch, cfg, loss_fn, vectorised)
            return outer.mean().detach(), {n: t - adapted[n].mean(0) if n in adapted else torch.zeros_like(t)
                                           for n, t in frozen.items() if meta_params[n].requires_grad}
        learned = {n: t for n, t in meta_params.items() if t.requires_grad}
        if not learned:
            raise ConfigError("meta_params: no tensor requires grad, so there is nothing to meta-learn")
        loss = _task_losses(module, meta_params, task_batch, cfg, loss_fn, vectorised)[0].mean()
        found = torch.autograd.grad(loss, list(learned.values()), allow_unused=True)
    return loss.detach(), {n: torch.zeros_like(t) if g is None else g for (n, t), g in zip(learned.items(), found)}


def meta_step(module: nn.Module, meta_params: Params, optimizer: torch.optim.Optimizer,
              task_batch: Sequence[Tensor], cfg: MetaConfig, loss_fn: LossFn, vectorised: bool = True,
              max_grad_norm: float | None = None) -> float:
    """One outer update: meta-gradient, optional clipping of its global norm to ``max_grad_norm``, then
    ``optimizer.step()`` (build the optimizer over ``meta_params.values()``). Returns the meta-loss.

    task_batch: support_x/support_y ``[tasks, k_shot, ...]``, query_x/query_y ``[tasks, n_query, ...]``.
    Example (Meta-SGD: the optimizer holds the learned rates too, which ``module.parameters()`` would miss)::

        cfg = MetaConfig(algorithm="metasgd", inner_steps=1, inner_lr=0.1)
        meta_params = init_meta_params(net, cfg)
        optimizer = torch.optim.Adam(meta_params.values(), lr=1e-3, fused=True)
        loss = meta_step(net, meta_params, optimizer, TaskBatch(sx, sy, qx, qy), cfg, F.mse_loss)
    """
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    missing = [n for n, t in meta_params.items() if t.requires_grad and id(t) not in held]
    if missing:
        # The usual mistake: an optimizer over module.parameters(), which leaves Meta-SGD's and per-step
        # rates out, so they would silently never be trained.
        raise ConfigError(f"the optimizer does not hold meta_params {missing[:4]}{' …' if len(missing) > 4 else ''}; "
                          "build it over meta_params.values() (init_meta_params gives the module's parameters "
                          "and the learned inner rates)")
    loss, grads = meta_gradient(module, meta_params, task_batch, cfg, loss_fn, vectorised)
    optimizer.zero_grad(set_to_none=True)
    for name, g in grads.items():
        meta_params[name].grad = g
    if max_grad_norm is not None:
        clip_grad_norm([meta_params[n] for n in grads], max_grad_norm)
    optimizer.step()
    return loss.item()
