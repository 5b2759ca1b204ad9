"""Notebook 04 on a CUDA GPU: seconds per meta-step, peak GPU memory, bfloat16 against float32, and the
``full``-profile notebook run — all written to one results file.

    make bench-gpu                                   # python -m benchmarks.bench_gpu
    python -m benchmarks.bench_gpu --device cpu --quick --no-notebook --out /tmp/dry.json   # a dry run

1. Meta-training steps of notebook 04's model (the conditional-prior VAE, Meta-SGD on the context and
   ``decoder.up``, 3 inner steps, K cycling 1 and 5) with :func:`metagen_utils.training.loop.fit`,
   in float32 and under bfloat16 autocast, at 16 and 64 tasks per step: seconds per step (wall time of
   ``--steps`` steps after ``--warmup`` steps, the device synchronised) and peak GPU memory.
2. ``python -m metagen_utils.kit.harness run --only 04 -p PROFILE full -p DEVICE cuda``: the notebook end to
   end on the GPU (bfloat16 autocast and 64 tasks per step there), its wall time and headline metrics.

It refuses to run without a CUDA device (``--device cpu`` is a dry run of the same code). Nothing else in
the kit needs a GPU; CI never runs this.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from metagen_utils.generation import vae as gen
from metagen_utils.files import write_json
from metagen_utils.data.glyphs import load_glyphs
from metagen_utils.generation.meta_vae import meta_model
from metagen_utils.profiles import META_VAE, META_VAE_MODEL as MODEL
from metagen_utils.training.loop import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gpu.json"
DTYPES = {"float32": None, "bfloat16": torch.bfloat16}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def time_meta_training(images, device: str, amp_name: str, tasks_per_step: int, steps: int,
                       warmup: int) -> dict:
    """Seconds per meta-training step and peak memory for one precision and batch size."""
    torch.manual_seed(0)
    model = gen.ConditionalVAE(MODEL["latent_dim"], MODEL["context_dim"], MODEL["width"], MODEL["blocks"]).to(device)
    learner = meta_model(model, MODEL, seed=0, device=device, amp_dtype=DTYPES[amp_name])
    run = {**META_VAE["cpu"], "tasks_per_step": tasks_per_step}      # K = 1 and 5 in turn, as in training

    def meta_train(n: int) -> list[float]:
        cfg = TrainConfig(steps=n, outer_lr=4e-3, max_grad_norm=100.0)
        return fit(learner, images, None, run, cfg, progress=False).train_losses

    meta_train(warmup)   # kernels chosen, caches warm
    synchronize(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    losses = meta_train(steps)
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.startswith("cuda") else None
    return {"precision": amp_name, "tasks_per_step": tasks_per_step, "seconds_per_step": seconds,
            "tasks_per_second": tasks_per_step / seconds, "peak_memory_mib": peak,
            "final_loss": losses[-1]}


def run_notebook(device: str, out: Path) -> dict:
    """Notebook 04 at the full profile on ``device`` through the kit's harness."""
    from metagen_utils.kit import harness

    start = time.perf_counter()
    metrics = harness.run(out, {"PROFILE": "full", "DEVICE": device}, only=["04"])
    return {"wall_seconds": time.perf_counter() - start, "metrics": metrics.get("04_meta_generation", {}),
            "executed_notebook": str(out / "notebooks" / "04_meta_generation.ipynb")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cuda:N; cpu for a dry run")
    parser.add_argument("--steps", type=int, default=50, help="timed meta-steps per configuration")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64], help="tasks per step to time")
    parser.add_argument("--quick", action="store_true", help="3 timed steps, 1 warm-up")
    parser.add_argument("--no-notebook", action="store_true", help="skip the full-profile notebook run")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device is available here; this benchmark needs one "
              "(--device cpu runs the same code as a dry run)", file=sys.stderr)
        return 2
    steps, warmup = (3, 1) if args.quick else (args.steps, args.warmup)
    background = load_glyphs(progress=False).split("background")
    report = {"device": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else
              platform.processor() or "cpu", "torch": torch.__version__, "steps_timed": steps, "runs": []}
    for batch in args.batches:
        for amp_name in DTYPES:
            row = time_meta_training(background, args.device, amp_name, batch, steps, warmup)
            report["runs"].append(row)
            memory = f", peak {row['peak_memory_mib']:.0f} MiB" if row["peak_memory_mib"] is not None else ""
            print(f"{amp_name:>8}, {batch:3d} tasks/step: {row['seconds_per_step'] * 1e3:8.1f} ms per meta-step"
                  f"{memory}", flush=True)
        fp32, bf16 = report["runs"][-2:]
        report[f"bf16_speedup_at_{batch}_tasks"] = fp32["seconds_per_step"] / bf16["seconds_per_step"]
        print(f"bfloat16 / float32 speed at {batch} tasks per step: "
              f"{report[f'bf16_speedup_at_{batch}_tasks']:.2f}×", flush=True)
    if not args.no_notebook:
        report["notebook_04_full"] = run_notebook(args.device, args.out.parent / "gpu_run")
        print(f"notebook 04, PROFILE=full on {args.device}: {report['notebook_04_full']['wall_seconds']:.0f} s")
    write_json(args.out, report)
    print(f"wrote {args.out}")
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
