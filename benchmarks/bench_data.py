"""Data benchmarks: how long the default glyph set takes to build, and how fast tasks are sampled.

    python -m benchmarks.bench_data [--repeats 3]

Prints medians and spread from one run. Builds in memory; the cache under data/glyphs/ is not touched.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from metagen_utils.data import glyphs

from metagen_utils.data import episodes as tasks


def time_build(repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        images, labels = glyphs.build(glyphs.GlyphSpec())
        seconds.append(time.perf_counter() - start)
    assert glyphs.check_against_manifest(glyphs.GlyphSpec(), images, labels, "the benchmark build")
    return seconds


def time_sampler(images, k_shot: int, n_query: int, n_way: int, batch: int, seconds: float = 2.0) -> float:
    sampler = tasks.EpisodeSampler(images, k_shot, n_query, n_way=n_way, seed=0)
    sampler.sample(batch)  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sampler.sample(batch)
        count += batch
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}")
    build = time_build(args.repeats)
    print(f"glyph set build (28 px, 1,939 classes × 20): median {statistics.median(build):.1f} s "
          f"(min {min(build):.1f}, max {max(build):.1f}, {args.repeats} runs); matches the manifest")
    background = glyphs.load_glyphs(progress=False).split("background")
    for k_shot, n_query, n_way in ((5, 5, 1), (1, 5, 5), (5, 15, 5)):
        rates = [time_sampler(background, k_shot, n_query, n_way, batch=16) for _ in range(3)]
        print(f"sampler {n_way}-way {k_shot}-shot + {n_query} query, batches of 16: "
              f"median {statistics.median(rates):,.0f} tasks/s (min {min(rates):,.0f}, max {max(rates):,.0f})")


if __name__ == "__main__":
    main()
