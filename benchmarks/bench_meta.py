"""Meta-learning benchmark: one MAML meta-step of a conv generator, the kit's paths against per-task loops.

    python -m benchmarks.bench_meta [--repeats N] [--quick] [--data glyphs|random] [--no-profile]

The problem: ``ConvGenerator`` (latent 32 → Linear → 64×7×7 → two ConvTranspose2d → 1×28×28, sigmoid),
16 tasks, each 5 support + 5 query (latent, image) pairs, 5 inner SGD steps on the support MSE, outer
loss the query MSE, Adam outer step, ``torch.set_num_threads(2)``. A task is one glyph class of the
background split (real images, ``--data glyphs``, the default) or random images in [0, 1]
(``--data random``); every image gets a fixed latent drawn from N(0, 1) with a seeded generator.

Paths, first order (FOMAML) and second order (MAML):

* ``kit vmap``: ``meta_step(..., vectorised=True)``, the kit's default (``torch.func.vmap``);
* ``kit loop``: ``meta_step(..., vectorised=False)``, the kit's Python loop over tasks;
* ``per-task loop``: what learn2learn does, written out here: per task, clone the parameters, take
  ``torch.autograd.grad(create_graph=True)`` steps on fast weights run with ``functional_call``, and
  backpropagate that task's query loss (the reference every ratio is against);
* ``higher``: ``higher.innerloop_ctx`` per task, when ``higher`` is installed (an optional benchmark
  extra, never a dependency of the kit).

In the same run, before timing: every path's meta-gradient on one task batch in float64, against the
per-task loop (max relative error), a float64 central finite difference of the second-order meta-loss
along a direction half random, half the gradient's, and the float32 meta-gradients of the timed
configuration; the run stops if they disagree. Then warm-up and ``--repeats`` meta-steps of each path
(forward + backward + Adam), interleaved round-robin so that load from other processes hits every path
alike; a short ``torch.profiler`` profile of the default path; and the ConvTranspose2d kernels as vmap
runs them (one grouped convolution) against one convolution per task.

``--quick`` (≤ 30 s on an idle machine): the float64 check on 4 tasks × 2 inner steps, no float32 check,
3 repeats. Timings on 2 threads need an idle machine: with other processes on the cores, every OpenMP
barrier can wait a scheduler tick for a descheduled thread, and steps slow down by 10× or more.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from metagen_utils.meta.maml import MetaConfig, TaskBatch, init_meta_params, meta_gradient, meta_step
from metagen_utils.models import ConvGenerator

THREADS = 2
REFERENCE = "per-task loop"
GOALS = {"second": 3.0, "first": 4.0}   # kit vmap speed-up over the per-task loop the issue asks for


@dataclass(frozen=True)
class Setup:
    tasks: int = 16
    k_shot: int = 5
    n_query: int = 5
    inner_steps: int = 5
    inner_lr: float = 0.1
    outer_lr: float = 1e-3
    latent_dim: int = 32
    image_size: int = 28
    data: str = "glyphs"        # "glyphs" (real images) or "random" (uniform in [0, 1])
    seed: int = 0

    def config(self, order: str) -> MetaConfig:
        return MetaConfig("maml" if order == "second" else "fomaml", inner_steps=self.inner_steps,
                          inner_lr=self.inner_lr)

    def describe(self) -> str:
        data = ("glyphs, background split (real images; one class per task)" if self.data == "glyphs"
                else "random images in [0, 1]")
        base, size = self.image_size // 4, self.image_size
        return (f"ConvGenerator(latent {self.latent_dim} → Linear → 64×{base}×{base} → ConvTranspose2d ×2 → "
                f"1×{size}×{size}, sigmoid); {self.tasks} tasks × "
                f"({self.k_shot} support + {self.n_query} query); {self.inner_steps} inner SGD steps "
                f"(lr {self.inner_lr}); MSE; Adam outer step (lr {self.outer_lr})\ndata: {data}; latents: "
                f"fixed per image, N(0, 1) from a generator seeded {self.seed}")


# ---------------------------------------------------------------------------------------------- problem
def make_module(setup: Setup, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(setup.seed)
    return ConvGenerator(setup.latent_dim, 1, setup.image_size).to(dtype)


def make_batch(setup: Setup, dtype: torch.dtype = torch.float32) -> TaskBatch:
    """support_x/query_x: latents ``[tasks, k, latent_dim]``; support_y/query_y: images ``[tasks, k, 1, S, S]``."""
    g = torch.Generator().manual_seed(setup.seed)
    per = setup.k_shot + setup.n_query
    if setup.data == "glyphs":
        from metagen_utils.data.glyphs import load_glyphs
        from metagen_utils.data.episodes import EpisodeSampler
        images = load_glyphs(image_size=setup.image_size, progress=False).split("background")
        episode = EpisodeSampler(images, setup.k_shot, setup.n_query, seed=setup.seed).sample(setup.tasks)
        pictures = torch.cat([episode.support, episode.query], dim=1)
    elif setup.data == "random":
        pictures = torch.rand(setup.tasks, per, 1, setup.image_size, setup.image_size, generator=g)
    else:
        raise ValueError(f"data={setup.data!r}; expected 'glyphs' or 'random'")
    latents = torch.randn(setup.tasks, per, setup.latent_dim, generator=g)
    latents, pictures = latents.to(dtype), pictures.to(dtype)
    k = setup.k_shot
    return TaskBatch(latents[:, :k], pictures[:, :k], latents[:, k:], pictures[:, k:])


# ------------------------------------------------------------------------------------------------ paths
# Each path accumulates the mean-over-tasks meta-gradient into module.parameters()' .grad (after zeroing),
# and returns the meta-loss; ``step`` adds the Adam step. The kit's paths go through its public API.

def per_task_loop_backward(module: nn.Module, batch: TaskBatch, setup: Setup, order: str) -> Tensor:
    """learn2learn-style MAML: per task, a differentiable clone of the parameters, inner steps with
    ``torch.autograd.grad(create_graph=True)`` (False at first order: the inner gradients are constants),
    fast weights run with ``functional_call``, and that task's query loss backpropagated at once."""
    second = order == "second"
    params = dict(module.named_parameters())
    tasks = len(batch.support_x)
    total = torch.zeros((), dtype=batch.query_y.dtype)
    for i in range(tasks):
        support_x, support_y, query_x, query_y = (t[i] for t in batch)
        fast = {n: p.clone() for n, p in params.items()}         # learn2learn's clone_module
        for _ in range(setup.inner_steps):
            loss = F.mse_loss(functional_call(module, fast, (support_x,)), support_y)
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=second, retain_graph=second)
            fast = {n: w - setup.inner_lr * g for (n, w), g in zip(fast.items(), grads)}
        query = F.mse_loss(functional_call(module, fast, (query_x,)), query_y)
        (query / tasks).backward()
        total += query.detach()
    return total / tasks


def higher_backward(module: nn.Module, batch: TaskBatch, setup: Setup, order: str) -> Tensor:
    """``higher.innerloop_ctx`` per task (copy_initial_weights=False, so gradients reach the module). First
    order detaches the inner gradients with ``grad_callback``; higher still builds their graph."""
    import higher
    inner_opt = torch.optim.SGD(module.parameters(), lr=setup.inner_lr)
    detach = (lambda grads: [g.detach() for g in grads]) if order == "first" else None
    tasks = len(batch.support_x)
    total = torch.zeros((), dtype=batch.query_y.dtype)
    for i in range(tasks):
        support_x, support_y, query_x, query_y = (t[i] for t in batch)
        with higher.innerloop_ctx(module, inner_opt, copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(setup.inner_steps):
                diffopt.step(F.mse_loss(fmodel(support_x), support_y), grad_callback=detach)
            query = F.mse_loss(fmodel(query_x), query_y)
            (query / tasks).backward()
        total += query.detach()
    return total / tasks


def kit_backward(vectorised: bool) -> Callable[[nn.Module, TaskBatch, Setup, str], Tensor]:
    def backward(module: nn.Module, batch: TaskBatch, setup: Setup, order: str) -> Tensor:
        cfg = setup.config(order)
        loss, grads = meta_gradient(module, init_meta_params(module, cfg), batch, cfg, F.mse_loss, vectorised)
        for name, p in module.named_parameters():
            p.grad = grads[name]
        return loss
    return backward


def paths_available() -> tuple[dict[str, Callable], str | None]:
    paths = {"kit vmap": kit_backward(True), "kit loop": kit_backward(False), REFERENCE: per_task_loop_backward}
    if importlib.util.find_spec("higher") is None:
        return paths, "higher not installed — skipped"
    return {**paths, "higher": higher_backward}, None


class Runner:
    """One path's own copy of the module and Adam optimizer, for timing full meta-steps."""

    def __init__(self, name: str, backward: Callable, module: nn.Module, batch: TaskBatch, setup: Setup,
                 order: str) -> None:
        self.name, self.backward, self.batch, self.setup, self.order = name, backward, batch, setup, order
        self.module = copy.deepcopy(module)
        self.cfg = setup.config(order)
        if name.startswith("kit"):
            self.meta_params = init_meta_params(self.module, self.cfg)
            self.optimizer = torch.optim.Adam(self.meta_params.values(), lr=setup.outer_lr, fused=True)
        else:
            self.optimizer = torch.optim.Adam(self.module.parameters(), lr=setup.outer_lr, fused=True)

    def step(self) -> float:
        if self.name.startswith("kit"):    # the kit's own one-call meta-step
            return meta_step(self.module, self.meta_params, self.optimizer, self.batch, self.cfg, F.mse_loss,
                             vectorised=self.name == "kit vmap")
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.backward(self.module, self.batch, self.setup, self.order)
        self.optimizer.step()
        return loss.item()


# --------------------------------------------------------------------------------------------- equality
def meta_gradients(backward: Callable, module: nn.Module, batch: TaskBatch, setup: Setup,
                   order: str) -> tuple[Tensor, dict[str, Tensor]]:
    module = copy.deepcopy(module)
    module.zero_grad(set_to_none=True)
    loss = backward(module, batch, setup, order)
    return loss.detach(), {n: p.grad.detach().clone() for n, p in module.named_parameters()}


def relative_error(grads: dict[str, Tensor], reference: dict[str, Tensor]) -> float:
    """Worst, over parameter tensors, of max |g − g_ref| / max |g_ref|."""
    return max(((grads[n] - r).abs().max() / r.abs().max().clamp_min(1e-300)).item() for n, r in reference.items())


def meta_loss_value(module: nn.Module, params: dict[str, Tensor], batch: TaskBatch, setup: Setup) -> float:
    """The second-order meta-loss at ``params``, plainly: inner SGD per task, mean query MSE."""
    total = 0.0
    for i in range(len(batch.support_x)):
        support_x, support_y, query_x, query_y = (t[i] for t in batch)
        fast = {n: p.detach().requires_grad_() for n, p in params.items()}
        for _ in range(setup.inner_steps):
            loss = F.mse_loss(functional_call(module, fast, (support_x,)), support_y)
            grads = torch.autograd.grad(loss, list(fast.values()))
            fast = {n: (w - setup.inner_lr * g).detach().requires_grad_() for (n, w), g in zip(fast.items(), grads)}
        with torch.no_grad():
            total += F.mse_loss(functional_call(module, fast, (query_x,)), query_y).item()
    return total / len(batch.support_x)


def unit(v: dict[str, Tensor]) -> dict[str, Tensor]:
    norm = math.sqrt(sum((t * t).sum().item() for t in v.values()))
    return {n: t / norm for n, t in v.items()}


def directional_fd(module: nn.Module, batch: TaskBatch, setup: Setup, grads: dict[str, Tensor],
                   eps: float = 1e-7, seed: int = 1) -> tuple[float, float]:
    """(central finite difference of the meta-loss along a unit direction v, ⟨meta-gradient, v⟩).

    v = unit(unit(random) + unit(meta-gradient)): the finite difference measures the true derivative along
    any fixed v, and the gradient's share keeps it well above the float64 rounding of the loss (along a
    random direction alone it is ~|g|/√(10⁵)). ReLU kinks make the loss only piecewise smooth: at ε ≥ 1e-6
    some pre-activations cross zero and the difference is off by percents, hence ε = 1e-7."""
    params = {n: p.detach() for n, p in module.named_parameters()}
    g = torch.Generator().manual_seed(seed)
    random = unit({n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in params.items()})
    gradient = unit(grads)
    v = unit({n: random[n] + gradient[n] for n in params})
    plus = meta_loss_value(module, {n: p + eps * v[n] for n, p in params.items()}, batch, setup)
    minus = meta_loss_value(module, {n: p - eps * v[n] for n, p in params.items()}, batch, setup)
    return (plus - minus) / (2 * eps), sum((grads[n] * v[n]).sum().item() for n in params)


@dataclass
class Agreement:
    errors: dict[tuple[str, str], float]          # (order, path) → max relative error vs the per-task loop
    losses: dict[tuple[str, str], float]
    fd: tuple[float, float]                       # (finite difference, ⟨grad, v⟩) at second order
    order_gap: float                              # relative difference of first- vs second-order gradients

    @property
    def fd_error(self) -> float:
        fd, analytic = self.fd
        return abs(fd - analytic) / max(abs(analytic), 1e-300)


def check_agreement(setup: Setup, dtype: torch.dtype = torch.float64, fd: bool = True) -> Agreement:
    """Every path's meta-gradient on one task batch, first and second order, against the per-task loop."""
    paths, _ = paths_available()
    module, batch = make_module(setup, dtype), make_batch(setup, dtype)
    errors, losses, reference = {}, {}, {}
    for order in ("second", "first"):
        _, reference[order] = meta_gradients(paths[REFERENCE], module, batch, setup, order)
        for name, backward in paths.items():
            loss, grads = meta_gradients(backward, module, batch, setup, order)
            errors[order, name] = relative_error(grads, reference[order])
            losses[order, name] = loss.item()
    directional = directional_fd(module, batch, setup, reference["second"]) if fd else (math.nan, math.nan)
    return Agreement(errors, losses, directional, relative_error(reference["first"], reference["second"]))


# ----------------------------------------------------------------------------------------------- timing
def time_paths(setup: Setup, repeats: int, warmup: int) -> dict[tuple[str, str], list[float]]:
    """Seconds per full meta-step, per (order, path); round-robin so every path sees the same load."""
    paths, _ = paths_available()
    module, batch = make_module(setup), make_batch(setup)
    runners = [Runner(name, backward, module, batch, setup, order)
               for order in ("second", "first") for name, backward in paths.items()]
    for runner in runners:
        for _ in range(warmup):
            runner.step()
    seconds: dict[tuple[str, str], list[float]] = {(r.order, r.name): [] for r in runners}
    for repeat in range(repeats):
        shift = repeat % len(runners)
        for runner in runners[shift:] + runners[:shift]:
            start = time.perf_counter()
            runner.step()
            seconds[runner.order, runner.name].append(time.perf_counter() - start)
    return seconds


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def print_table(seconds: dict[tuple[str, str], list[float]]) -> dict[str, tuple[float, float]]:
    """Prints the timing table; returns the kit vmap speed-up over the per-task loop per order, (by medians,
    by minima)."""
    print(f"{'path':<16} {'order':<7} {'median ms':>10} {'IQR ms':>15} {'min–max ms':>17} "
          f"{'speed-up':>9} {'by min':>7}")
    speedups = {}
    for (order, name), values in seconds.items():
        ms = [1000 * v for v in values]
        reference = seconds[order, REFERENCE]
        ratio = statistics.median(reference) / statistics.median(values)
        if name == "kit vmap":
            speedups[order] = ratio, min(reference) / min(values)
        q1, q3 = quartiles(ms)
        print(f"{name:<16} {order:<7} {statistics.median(ms):>10.1f} {f'{q1:.1f}–{q3:.1f}':>15} "
              f"{f'{min(ms):.1f}–{max(ms):.1f}':>17} {ratio:>8.2f}× {min(reference) / min(values):>6.2f}×")
    print("speed-up = per-task loop median / path median; by min = the same with the fastest runs (less "
          "sensitive to other processes' load)")
    return speedups


# ---------------------------------------------------------------------------------------------- profile
CATEGORIES = (
    ("convolution (forward, backward, double backward)", ("conv",)),
    ("matmul (Linear)", ("mm", "bmm", "addmm", "matmul", "linear")),
    ("elementwise / reductions", ("mul", "add", "sub", "neg", "div", "threshold", "clamp", "sigmoid", "relu",
                                  "sum", "mean", "mse", "pow", "where", "fill_", "zero_", "_foreach")),
    ("copies / layout", ("copy_", "clone", "cat", "stack", "contiguous", "empty", "permute", "view", "reshape",
                         "expand", "slice", "select", "transpose", "unsqueeze", "squeeze", "as_strided")),
)


def categorise(name: str) -> str:
    op = name.removeprefix("aten::")
    for category, needles in CATEGORIES:
        if any(op == n or op.startswith(n + "_") or n in op.split("_") or (n == "conv" and "conv" in op)
               for n in needles):
            return category
    return "other ops"


def profile_default(setup: Setup, steps: int, top: int = 8) -> None:
    """torch.profiler over ``steps`` kit vmap meta-steps per order: the share of each kind of op, the wall
    time left outside ATen ops (Python, vmap and autograd bookkeeping), top ops by self CPU time, and the
    convolution calls by input shape (under vmap a per-task weight turns a convolution into one with
    ``groups = tasks``: input ``[k, tasks × 64, 7, 7]``, weight ``[tasks × 64, 32, 4, 4]``)."""
    from torch.profiler import ProfilerActivity, profile
    module, batch = make_module(setup), make_batch(setup)
    for order in ("second", "first"):
        runner = Runner("kit vmap", None, module, batch, setup, order)
        runner.step()
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(steps):
                runner.step()
        wall = (time.perf_counter() - start) / steps * 1000
        events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
        total = sum(e.self_cpu_time_total for e in events) / steps / 1000
        shares: dict[str, float] = {}
        for e in events:
            cat = categorise(e.key)
            shares[cat] = shares.get(cat, 0.0) + e.self_cpu_time_total / steps / 1000
        print(f"\n{order} order, kit vmap: {wall:.0f} ms per meta-step under the profiler; {total:.0f} ms in "
              f"ATen ops, {max(wall - total, 0):.0f} ms ({max(wall - total, 0) / wall:.0%}) outside them (Python, "
              "vmap, autograd, and the profiler's own per-op cost)")
        for cat, ms in sorted(shares.items(), key=lambda kv: -kv[1]):
            print(f"  {cat:<50} {ms:7.1f} ms  {ms / total:5.1%}")
        print(f"  top {top} ops by self time:")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
            ms = e.self_cpu_time_total / steps / 1000
            print(f"    {e.key:<40} {ms:7.1f} ms  {ms / total:5.1%}  {e.count // steps:>4} calls")
        convs = [e for e in prof.key_averages(group_by_input_shape=True)
                 if e.key.startswith("aten::") and categorise(e.key).startswith("convolution")]
        print("  top convolution calls by input shapes (input, weight):")
        for e in sorted(convs, key=lambda e: -e.self_cpu_time_total)[:5]:
            ms = e.self_cpu_time_total / steps / 1000
            shapes = ", ".join(str(list(s)) for s in e.input_shapes[:3] if s)
            print(f"    {e.key:<28} {ms:7.1f} ms  {ms / total:5.1%}  {e.count // steps:>3}×  {shapes}")


def conv_kernels(setup: Setup, repeats: int = 5) -> float:
    """Forward + backward of each ConvTranspose2d as vmap runs it (one grouped convolution, groups = tasks),
    as the loops run it (one convolution per task) and, for scale, with one weight shared by every task.
    Returns the seconds of one forward + backward of both layers as vmap runs them."""
    tasks, k = setup.tasks, setup.k_shot
    print(f"\nConvTranspose2d forward + backward, float32, {tasks} tasks × {k} images (median of {repeats}):")
    grouped_ms = 0.0
    for c_in, c_out, size in ((64, 32, setup.image_size // 4), (32, 1, setup.image_size // 2)):
        def run(x: Tensor, w: Tensor, groups: int) -> None:
            y = F.conv_transpose2d(x, w, stride=2, padding=1, groups=groups)
            torch.autograd.grad(y.sum(), (x, w))
        grouped = (torch.randn(k, tasks * c_in, size, size, requires_grad=True),
                   torch.randn(tasks * c_in, c_out, 4, 4, requires_grad=True))
        single = (torch.randn(k, c_in, size, size, requires_grad=True),
                  torch.randn(c_in, c_out, 4, 4, requires_grad=True))
        dense = (torch.randn(tasks * k, c_in, size, size, requires_grad=True), single[1])
        cases = {"vmap (grouped)": lambda: run(*grouped, tasks),
                 "per-task loop": lambda: [run(*single, 1) for _ in range(tasks)],
                 "shared weight": lambda: run(*dense, 1)}
        ms: dict[str, float] = {}
        for name, fn in cases.items():
            fn()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            ms[name] = 1000 * statistics.median(times)
        print(f"  {c_in:>2}→{c_out:<2} {size}×{size}→{2 * size}×{2 * size}: "
              + ", ".join(f"{name} {t:.1f} ms" for name, t in ms.items())
              + f"; loop / vmap {ms['per-task loop'] / ms['vmap (grouped)']:.1f}×")
        grouped_ms += ms["vmap (grouped)"]
    print("  the vmapped path gains on the loop in its convolutions no more than these kernel ratios")
    return grouped_ms / 1000


def first_order_ceiling(setup: Setup, conv_seconds: float, loop_seconds: list[float]) -> None:
    """A first-order meta-step runs the convolutions forward and backward once per inner step and once on
    the query set (same image counts), so the grouped convolutions alone bound the vmap path's speed-up."""
    passes = setup.inner_steps + 1
    floor = passes * conv_seconds
    loop = statistics.median(loop_seconds)
    print(f"  first order: {passes} forward + backward passes × {1000 * conv_seconds:.1f} ms = {1000 * floor:.0f} ms "
          f"per meta-step in vmap's grouped convolutions alone, against the per-task loop's {1000 * loop:.0f} ms: "
          f"with nothing else, the speed-up could reach {loop / floor:.1f}× (goal {GOALS['first']:.0f}×)")


# ------------------------------------------------------------------------------------------------- main
def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed meta-steps per path (default 15; --quick: 3)")
    parser.add_argument("--quick", action="store_true", help="few repeats, a smaller float64 check (≤ 30 s)")
    parser.add_argument("--data", choices=("glyphs", "random"), default="glyphs")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 15)
    warmup = 1 if args.quick else 2
    started = time.perf_counter()

    torch.set_num_threads(THREADS)
    setup = Setup(data=args.data)
    print("MAML meta-step benchmark")
    print(setup.describe())
    print(f"torch {torch.__version__}; torch.set_num_threads({THREADS}) → {torch.get_num_threads()} threads; "
          f"load average {load_average()} (1, 5, 15 min)")
    _, skipped = paths_available()
    if skipped:
        print(skipped)
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if busy > 1.0:
        print(f"warning: load average {busy:.1f} before this run starts: other processes compete for the "
              f"{os.cpu_count()} CPUs, and each time one of the {THREADS} OpenMP threads is descheduled the other "
              "waits for it, so medians inflate (the loops' many small ops most); compare the 'by min' ratios")

    check = replace(setup, tasks=4, inner_steps=2) if args.quick else setup
    where = "full size" if check == setup else f"{check.tasks} tasks, {check.inner_steps} inner steps"
    print(f"\nEquality, float64 ({where}), same task batch: max relative error of each meta-gradient vs the "
          f"{REFERENCE}")
    agreement = check_agreement(check)
    for (order, name), error in agreement.errors.items():
        print(f"  {order:<7} {name:<16} {error:9.2e}   meta-loss {agreement.losses[order, name]:.12f}")
    fd, analytic = agreement.fd
    print(f"  finite difference (central, ε = 1e-7) of the second-order meta-loss along a direction v half random, "
          f"half the gradient's: {fd:.10e} vs ⟨meta-gradient, v⟩ {analytic:.10e}: relative error "
          f"{agreement.fd_error:.1e}")
    print(f"  (first- and second-order meta-gradients differ by {agreement.order_gap:.2f} relative, so the two "
          "orders are different computations)")
    f32 = check_agreement(setup, torch.float32, fd=False) if not args.quick else None
    if f32 is not None:
        print(f"  float32, the timed configuration: max relative error {max(f32.errors.values()):.1e}")
    print(f"  ({time.perf_counter() - started:.0f} s so far)")
    worst = max(agreement.errors.values())
    worst32 = max(f32.errors.values()) if f32 is not None else 0.0
    if worst > 1e-9 or worst32 > 1e-4 or not agreement.fd_error < 1e-6:
        raise SystemExit(f"the paths disagree (float64 max relative error {worst:.1e}, float32 {worst32:.1e}, "
                         f"finite difference {agreement.fd_error:.1e}): timings would not compare equal math")

    print(f"\nTiming, float32: {warmup} warm-up + {repeats} timed meta-steps per path (forward + backward + Adam "
          "step, time.perf_counter), interleaved round-robin")
    seconds = time_paths(setup, repeats, warmup)
    speedups = print_table(seconds)
    for order, goal in GOALS.items():
        by_median, by_min = speedups[order]
        met = "met" if by_median >= goal else "NOT met"
        print(f"goal {order} order: kit vmap ≥ {goal:.0f}× the per-task loop — {by_median:.2f}× by medians, "
              f"{met} ({by_min:.2f}× by minima)")
    print(f"load average after timing {load_average()} ({time.perf_counter() - started:.0f} s so far)")

    if not args.no_profile:
        profile_default(setup, steps=1 if args.quick else 3)
        first_order_ceiling(setup, conv_kernels(setup, repeats=3 if args.quick else 7),
                            seconds["first", REFERENCE])
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return speedups


if __name__ == "__main__":
    main()
