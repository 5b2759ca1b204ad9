"""Threads benchmark: notebook 02's MAML on one thread and on two, side by side.

    python -m benchmarks.bench_threads [--steps 20] [--repeats 3]

Notebook 02 meta-trains its linear network on two threads: one outer step is 64 tasks, k = 5 inner steps
on the 513 Fourier features of the observed pixels, second order, 196 query pixels. This runs that step
on one thread and on two, ``--repeats`` runs of ``--steps`` steps each, interleaved so that load from
other processes hits both alike. It prints the median time of a step on each, their ratio, and whether
θ₀ after the steps is the same bit for bit on both (the notebook's comment says it is).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor

from metagen_utils import completion
from metagen_utils.data import ImageSet, load_glyphs
from metagen_utils.kernels import pin_cpu_kernels
from metagen_utils.meta import MetaConfig

# Notebook 02's settings at the cpu profile (its parameters cell, and the inner rate it chooses)
FEATURES, SCALE, INNER_STEPS, INNER_LR, TASKS, QUERY_PIXELS = 256, 3.0, 5, 0.15, 64, 196


def maml(features: Tensor, background: ImageSet, threads: int, steps: int) -> tuple[Tensor, float]:
    """(θ₀ ``[2 · FEATURES + 1]`` after ``steps`` of notebook 02's MAML on ``threads`` threads, seconds per
    step). The thread count is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        theta, _ = completion.train_maml(features, background, MetaConfig("maml", INNER_STEPS, INNER_LR),
                                         steps=steps, meta_batch_size=TASKS, query_pixels=QUERY_PIXELS,
                                         progress=False)
        return theta, (time.perf_counter() - start) / steps
    finally:
        torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="outer steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs on each thread count, interleaved")
    args = parser.parse_args(argv)
    pin_cpu_kernels()
    background = completion.three_splits(load_glyphs(28, progress=False), seed=0)[0]
    features = completion.fourier_design(28, 28, FEATURES, SCALE, seed=0)
    seconds: dict[int, list[float]] = {1: [], 2: []}
    thetas: dict[int, Tensor] = {}
    maml(features, background, 2, 2)                                   # warm-up
    for _ in range(args.repeats):
        for threads in (1, 2):
            thetas[threads], step = maml(features, background, threads, args.steps)
            seconds[threads].append(step)
    one, two = (statistics.median(seconds[n]) * 1e3 for n in (1, 2))
    print(f"notebook 02's MAML outer step ({TASKS} tasks, k = {INNER_STEPS}), median of {args.repeats} runs "
          f"of {args.steps} steps:")
    print(f"  1 thread  {one:7.1f} ms\n  2 threads {two:7.1f} ms   ({one / two:.2f}× faster)")
    same = torch.equal(thetas[1], thetas[2])
    print(f"  θ₀ after {args.steps} steps: {'the same bit for bit' if same else 'DIFFERS'} on 1 and 2 threads")


if __name__ == "__main__":
    main()
