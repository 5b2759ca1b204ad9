"""Meta-training: one generic outer loop — AdamW, warm-up and cosine schedule, gradient clipping,
validation, safe atomic checkpoints, exact resume, and data parallelism over tasks.

The loop knows nothing about the model. It takes the meta-parameters (a dict name → tensor), a
``loss_fn(meta_params, episode)`` giving the meta-loss of a batch of tasks, and a ``sample_fn(step)``
giving step ``step``'s episode. Every step's randomness — its tasks, and the global RNGs the loss may
draw from — is a pure function of ``(seed, step)`` (and the rank), never of how many steps ran before
in this process; that is what makes resuming exact and running on several processes simple.

    python -m metagen_utils train --profile cpu --out runs/demo
    torchrun --nproc_per_node=2 -m metagen_utils train --profile cpu --out runs/demo
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from .checkpoint import check_config, copy_checkpoint, load_checkpoint, restore, save_checkpoint
from ..config import progress_disabled
from ..data.images import ImageSet
from .. import profiles
from ..errors import ConfigError, MetaLearningError
from ..kernels import clip_grad_norm
from ..data.episodes import Episode, EpisodeSampler
from ..meta.maml import Params
from .schedule import warmup_cosine

# The meta-loss of an episode's tasks (a mean over them), or (meta-loss, outer direction) where that
# direction is not the loss's gradient (Reptile) — meta.meta_gradient returns exactly that pair. Not
# meta.LossFn, which scores one task's predictions.
EpisodeLoss = Callable[[Params, Episode], Tensor | tuple[Tensor, Params]]


@dataclass(frozen=True)
class TrainConfig:
    """The outer loop. The learning rate warms up linearly over ``warmup_steps``, then follows a cosine
    from ``outer_lr`` down towards zero (:func:`metagen_utils.training.schedule.warmup_cosine`; a warm-up
    longer than the run only ramps up);
    ``max_grad_norm=None`` turns clipping off. ``lr_scale`` ``{prefix: factor}``: the meta-parameters whose
    names start with ``prefix`` train at ``factor`` × that rate (the longest matching prefix wins). Adam
    moves every tensor by about its rate per step whatever the tensor's size, so a tensor that starts
    thousands of times smaller than the others (a learned inner rate of 1e-4) needs a smaller rate."""

    steps: int = 1000
    outer_lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    checkpoint_every: int = 100
    validate_every: int = 100
    keep_last: int = 2          # step_XXXXXX folders kept besides latest/ and best/
    seed: int = 0
    lr_scale: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if name in ("steps", "checkpoint_every", "validate_every", "keep_last", "warmup_steps", "seed"):
                least = 0 if name in ("warmup_steps", "seed") else 1
                if not isinstance(value, int) or value < least:
                    raise ConfigError(f"{name}={value!r} is not valid; expected an integer ≥ {least}")
            elif name == "lr_scale":
                if not isinstance(value, dict) or not all(
                        isinstance(k, str) and isinstance(v, (int, float)) and 0 < v < math.inf for k, v in value.items()):
                    raise ConfigError(f"lr_scale={value!r} is not valid; expected {{name prefix: factor > 0}}, "
                                      "e.g. {'inner_lr.decoder': 0.3}")
            elif name == "max_grad_norm":
                if value is not None and not (isinstance(value, (int, float)) and 0 < value < math.inf):
                    raise ConfigError(f"max_grad_norm={value!r} is not valid; expected a number > 0, or None")
            elif not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name}={value!r} is not valid; expected a finite number ≥ 0")


def rate_groups(names: Sequence[str], meta_params: Params, lr_scale: Mapping[str, float]) -> list[dict]:
    """The optimiser's parameter groups: one per factor of ``lr_scale`` that some name takes (the longest
    matching prefix; 1 for the rest), each carrying its ``scale``, in the order of ``names``."""
    groups: dict[float, list] = {}
    for name in names:
        prefixes = [p for p in lr_scale if name.startswith(p)]
        factor = float(lr_scale[max(prefixes, key=len)]) if prefixes else 1.0
        groups.setdefault(factor, []).append(meta_params[name])
    return [{"params": tensors, "scale": factor} for factor, tensors in groups.items()]


@dataclass
class TrainResult:
    """params: the trained meta-parameters (the dict passed in, updated in place); train_losses: the
    meta-loss of every step from 1 (a resumed run includes the steps before the interruption);
    validation: ``[step, loss]`` pairs (filled on rank 0 only); best_params: a copy of the meta-parameters
    at ``best_step``, the step with the lowest validation loss (None without validation)."""

    params: Params
    step: int
    train_losses: list[float] = field(default_factory=list)
    validation: list[list[float]] = field(default_factory=list)
    best_step: int | None = None
    best_validation: float | None = None
    best_params: Params | None = None


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(episode: Episode, rank: int, world: int) -> Episode:
    """Tasks ``rank::world`` of ``episode`` — every task on exactly one rank, however uneven the split."""
    return Episode(*(getattr(episode, f.name)[rank::world] for f in dataclasses.fields(Episode)))


def seed_step(seed: int, step: int, rank: int = 0) -> None:
    """Seed torch, NumPy and Python from (seed, step, rank), so randomness inside a loss (noise, dropout)
    is the same whether a step runs straight through or after a resume, and differs between ranks."""
    a, b = np.random.SeedSequence([seed, step, rank]).generate_state(2)
    torch.manual_seed(int(a))
    np.random.seed(int(b))
    random.seed(int(a))


def episode_fn(images: ImageSet, k_shot: int | Sequence[int], n_query: int, tasks_per_step: int,
               seed: int) -> Callable[[int], Episode]:
    """``step → Episode`` with support ``[tasks_per_step, K, C, H, W]``, a pure function of (seed, step):
    each call draws from a fresh generator seeded by both, not from one stream read in order, so step 8
    has the same tasks whether or not steps 1–7 ran in this process. ``k_shot`` is K, or a list of K that
    the steps take in turn (step s uses ``k_shot[s % len(k_shot)]``), so one model learns every K."""
    shots = [k_shot] if isinstance(k_shot, int) else list(k_shot)
    if not shots:
        raise ConfigError("k_shot=[]: expected a number of support images, or a list of them")
    # One sampler per K, each checking the data once; reused for every step.
    samplers = [EpisodeSampler(images, k, n_query, seed=seed) for k in shots]

    def sample(step: int) -> Episode:
        sampler = samplers[step % len(samplers)]
        sampler.rng = np.random.default_rng([seed, step])
        return sampler.sample(tasks_per_step)
    return sample


def _local_gradient(loss_fn: EpisodeLoss, meta_params: Params, names: list[str],
                    episode: Episode) -> tuple[Tensor, Params]:
    """This rank's (meta-loss, gradients): a mean over its tasks; zeros when it has none."""
    if episode.num_tasks == 0:
        return torch.zeros(()), {n: torch.zeros_like(meta_params[n]) for n in names}
    with torch.enable_grad():
        out = loss_fn(meta_params, episode)
        if isinstance(out, tuple):
            loss, found = out
            grads = [found.get(n) for n in names]
        else:
            loss = out
            grads = torch.autograd.grad(loss, [meta_params[n] for n in names], allow_unused=True)
    return loss.detach(), {n: torch.zeros_like(meta_params[n]) if g is None else g.detach().contiguous()
                           for n, g in zip(names, grads)}


def _should(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def train(meta_params: Params, loss_fn: EpisodeLoss, sample_fn: Callable[[int], Episode], cfg: TrainConfig,
          validate_fn: Callable[[Params], float] | None = None, out_dir: str | Path | None = None,
          resume: bool = False, progress: bool = True, run_config: Mapping | None = None) -> TrainResult:
    """Meta-train ``meta_params`` in place for ``cfg.steps`` outer steps with AdamW.

    Every step: seed from (seed, step), ``episode = sample_fn(step)`` (support ``[tasks, K, C, H, W]``),
    this rank's tasks → meta-loss and gradients, average over ranks, clip, update. ``validate_fn(params)``
    runs every ``cfg.validate_every`` steps; the lowest is kept in ``out_dir/best/``. Every
    ``cfg.checkpoint_every`` steps ``out_dir/step_XXXXXX/`` is written and copied to ``out_dir/latest/``,
    which ``resume=True`` continues from — bit-identically on the CPU. ``run_config`` (JSON-able: model,
    data, …) is saved beside ``cfg`` and must match on resume. A non-finite loss or gradient raises
    MetaLearningError naming the step before anything of that step is applied or saved.
    """
    rank, world = rank_and_world()
    names = [n for n, t in meta_params.items() if t.requires_grad]
    if not names:
        raise ConfigError("meta_params: no tensor requires grad, so there is nothing to meta-learn")
    trainable = [meta_params[n] for n in names]
    optimizer = torch.optim.AdamW(rate_groups(names, meta_params, cfg.lr_scale), lr=cfg.outer_lr,
                                  weight_decay=cfg.weight_decay, fused=True)   # fused: see kernels.sqrt
    config = {"train": asdict(cfg), "run": dict(run_config or {})}
    history: dict = {"train_losses": [], "validation": [], "best_step": None, "best_validation": None}
    out = None if out_dir is None else Path(out_dir)
    start, best = 0, None
    if resume:
        if out is None:
            raise ConfigError("resume=True needs the out_dir whose latest/ checkpoint to continue")
        checkpoint = load_checkpoint(out / "latest")
        check_config(checkpoint, config)
        restore(checkpoint, meta_params, optimizer)
        start, history = checkpoint.step, checkpoint.extra.get("history", history)
        if history["best_step"] is not None and (out / "best").is_dir():
            best = {n: t.to(meta_params[n].device) for n, t in load_checkpoint(out / "best").weights.items()}
    elif out is not None and (out / "latest").exists():
        raise ConfigError(f"{out / 'latest'} already holds a checkpoint; resume it (resume=True, --resume) "
                          "or give another output folder")
    if world > 1:
        # The meta-parameters are a dict, not an nn.Module, so DistributedDataParallel has nothing to wrap;
        # plain collectives do its job: one broadcast so every rank starts equal, one all_reduce per step.
        for t in meta_params.values():
            dist.broadcast(t.data, src=0)

    def save(folder: Path, step: int) -> Path:
        return save_checkpoint(folder, meta_params, step=step, config=config, optimizer=optimizer,
                               extra={"history": history})

    bar = tqdm(range(start + 1, cfg.steps + 1), initial=start, total=cfg.steps, desc="meta-training",
               disable=not progress or progress_disabled() or rank != 0)
    for step in bar:
        seed_step(cfg.seed, step, rank)
        episode = sample_fn(step)
        mine = shard(episode, rank, world)
        failure = None
        try:
            loss, grads = _local_gradient(loss_fn, meta_params, names, mine)
        except MetaLearningError as error:   # report it on every rank below instead of hanging the others
            failure = error
            loss, grads = torch.tensor(math.nan), {n: torch.zeros_like(meta_params[n]) for n in names}
        if world > 1:
            # Each rank's loss and gradients are means over its own tasks; weighting them by its share of
            # the tasks makes the sum over ranks the mean over all of them, even for an uneven split.
            weight = mine.num_tasks / episode.num_tasks
            device = trainable[0].device
            loss = loss.to(device) * weight
            dist.all_reduce(loss)
            for g in grads.values():
                g.mul_(weight)
                dist.all_reduce(g)
        value = loss.item()
        if failure is not None or not math.isfinite(value):
            cause = f": {failure}" if failure is not None else ""
            raise MetaLearningError(f"step {step} of {cfg.steps}: the meta-loss is {value}{cause}. Nothing of "
                                    "this step was applied or saved; lower outer_lr or inner_lr, or check the "
                                    "data") from failure
        for n, g in grads.items():
            meta_params[n].grad = g
        norm = clip_grad_norm(trainable, cfg.max_grad_norm or math.inf)
        if not torch.isfinite(norm):
            raise MetaLearningError(f"step {step} of {cfg.steps}: the meta-gradient norm is {norm.item()}; "
                                    "nothing of this step was applied or saved")
        for group in optimizer.param_groups:
            group["lr"] = group["scale"] * cfg.outer_lr * warmup_cosine(step, cfg.steps, cfg.warmup_steps)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        history["train_losses"].append(value)
        bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        if validate_fn is not None and rank == 0 and _should(step, cfg.validate_every, cfg.steps):
            val = float(validate_fn(meta_params))
            if not math.isfinite(val):
                raise MetaLearningError(f"step {step} of {cfg.steps}: the validation loss is {val}")
            history["validation"].append([step, val])
            if history["best_validation"] is None or val < history["best_validation"]:
                history["best_step"], history["best_validation"] = step, val
                best = {n: t.detach().clone() for n, t in meta_params.items()}
                if out is not None:
                    save(out / "best", step)
        if out is not None and rank == 0 and _should(step, cfg.checkpoint_every, cfg.steps):
            copy_checkpoint(save(out / f"step_{step:06d}", step), out / "latest")
            for old in sorted(out.glob("step_" + "[0-9]" * 6))[:-cfg.keep_last]:
                shutil.rmtree(old)
    bar.close()
    return TrainResult(meta_params, max(start, cfg.steps), history["train_losses"], history["validation"],
                       history["best_step"], history["best_validation"], best)


# ------------------------------------------------------------------------------ models the CLI trains
@dataclass
class MetaModel:
    """A meta-learnable model as the training entry point and the CLI use it.

    loss_fn: (meta_params, episode) → meta-loss[, direction], for :func:`train`.
    validate_fn: (meta_params, episode) → mean query loss after adaptation (a float).
    evaluate_fn: (meta_params, episode) → per-task metrics ``{name: [tasks]}`` (query MSE and PSNR before and
    after adapting to the support images).
    generate_fn: (meta_params, support ``[K, C, H, W]``) → new images of that class ``[n, C, H, W]``.
    train_fn: for a model with a training loop of its own (notebook 05's anneals a loss weight over the
    run): (background, validation, run, cfg, out_dir) → :class:`TrainResult`, writing ``out_dir/latest/``
    and ``out_dir/best/``; the command line calls it instead of :func:`fit`. None: :func:`fit` trains it.
    """

    meta_params: Params
    loss_fn: EpisodeLoss
    validate_fn: Callable[[Params, Episode], float]
    evaluate_fn: Callable[[Params, Episode], dict[str, Tensor]]
    generate_fn: Callable[[Params, Tensor], Tensor]
    train_fn: Callable[..., TrainResult] | None = None


def fit(model: MetaModel, background: ImageSet, validation: ImageSet | None, run: Mapping, cfg: TrainConfig,
        out_dir: str | Path | None = None, resume: bool = False, progress: bool = True) -> TrainResult:
    """Meta-train ``model`` on tasks of ``background`` as ``run`` describes them — K support images
    (``run["train_k_shots"]`` in turn where given, else ``run["k_shot"]``), ``n_query`` query images,
    ``tasks_per_step`` tasks a step — and validate on the same ``val_tasks`` tasks of ``validation``
    (K = ``run["k_shot"]``) every ``cfg.validate_every`` steps. The command line's ``train`` and notebook
    04 both train this way; see :func:`train` for the loop, checkpoints and resuming."""
    sample = episode_fn(background, run.get("train_k_shots", run["k_shot"]), run["n_query"],
                        run["tasks_per_step"], cfg.seed)
    validate = None
    if validation is not None:
        episode = episode_fn(validation, run["k_shot"], run["n_query"], run["val_tasks"], cfg.seed)(0)
        validate = lambda params: model.validate_fn(params, episode)   # noqa: E731
    return train(model.meta_params, model.loss_fn, sample, cfg, validate, out_dir, resume, progress,
                 run_config=run)


def init_distributed(device: str) -> tuple[int, int, str]:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT):
    NCCL on CUDA, one GPU per process; gloo on the CPU. Without torchrun: rank 0 of 1, no group."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, device
    if device == "mps":
        raise ConfigError("DEVICE='mps' cannot run several processes (no torch.distributed backend for it); "
                          "use --device cpu or a single process")
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def run_settings(profile: str, model: str, data: str, seed: int, **overrides) -> tuple[dict, TrainConfig]:
    """(run config saved in checkpoints, :class:`TrainConfig`) of a profile (:func:`profiles.run_settings`,
    whose overrides it takes: ``steps``, ``tasks_per_step``, ``pretrain_steps``, ``class_steps``)."""
    run, settings = profiles.run_settings(profile, model, data, seed, **overrides)
    return run, TrainConfig(**settings)
