"""Benchmarks at tiny size: every meta-step path computes the same meta-gradient; the GPU script's dry run."""
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # benchmarks/ is not installed; plain `pytest` does not put the root on sys.path
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_meta import REFERENCE, Setup, check_agreement, paths_available  # noqa: E402


def test_every_path_gives_the_same_meta_gradient_in_float64():
    setup = Setup(tasks=2, k_shot=3, n_query=2, inner_steps=2, inner_lr=0.5, latent_dim=8, image_size=12,
                  data="random")
    agreement = check_agreement(setup)
    paths, _ = paths_available()
    assert set(agreement.errors) == {(order, name) for order in ("second", "first") for name in paths}
    assert {"kit vmap", "kit loop", REFERENCE} <= set(paths)
    for (order, name), error in agreement.errors.items():
        assert error < 1e-10, f"{order} order, {name}: relative error {error:.1e} vs the {REFERENCE}"
        assert math.isclose(agreement.losses[order, name], agreement.losses[order, REFERENCE], rel_tol=1e-12)
    fd, analytic = agreement.fd
    assert abs(analytic) > 1e-8, "the direction is orthogonal to the gradient: the check would prove nothing"
    assert agreement.fd_error < 1e-6, f"finite difference {fd} vs ⟨meta-gradient, v⟩ {analytic}"
    assert agreement.order_gap > 1e-3, "first- and second-order meta-gradients coincide: an order is ignored"


def test_notebook_02s_maml_steps_give_the_same_bits_on_one_thread_and_two(glyph_set):
    # notebook 02 runs on two threads and says its numbers come out as on one: three of its outer steps
    from benchmarks.bench_threads import FEATURES, SCALE, maml
    from metagen_utils import completion

    background = completion.three_splits(glyph_set, seed=0)[0]
    features = completion.fourier_design(28, 28, FEATURES, SCALE, seed=0)
    before = torch.get_num_threads()
    (one, _), (two, _) = (maml(features, background, threads, steps=3) for threads in (1, 2))
    assert torch.get_num_threads() == before
    assert one.abs().sum() > 0 and torch.equal(one, two)


@pytest.mark.slow
def test_the_gpu_benchmark_dry_runs_on_the_cpu_and_writes_its_results_file(tmp_path, capsys):
    from benchmarks import bench_gpu

    out = tmp_path / "gpu.json"
    assert bench_gpu.main(["--device", "cpu", "--quick", "--no-notebook", "--batches", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [(r["precision"], r["tasks_per_step"]) for r in report["runs"]] == [("float32", 2), ("bfloat16", 2)]
    assert all(r["seconds_per_step"] > 0 and math.isfinite(r["final_loss"]) for r in report["runs"])
    assert report["bf16_speedup_at_2_tasks"] > 0


def test_the_gpu_benchmark_refuses_to_run_without_cuda(capsys, monkeypatch):
    from benchmarks import bench_gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)   # the same on a machine with a GPU
    assert bench_gpu.main([]) == 2
    assert "no CUDA device is available here" in capsys.readouterr().err


def test_the_kernel_fingerprint_hashes_every_computation_the_same_way_twice(capsys):
    from benchmarks import kernel_fingerprint

    first, second = kernel_fingerprint.fingerprint(), kernel_fingerprint.fingerprint()
    assert first == second
    assert {"matmul torch.float32", "sqrt torch.float64", "conv2d grad x", "adam fused", "kernels.sqrt"} <= set(first)
    assert all(len(digest) == 12 for digest in first.values())
    kernel_fingerprint.main([])
    printed = capsys.readouterr().out
    assert f"{'adam fused':24s} {first['adam fused']}" in printed
