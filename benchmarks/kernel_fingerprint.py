"""A fingerprint of the CPU arithmetic the notebooks rest on, to compare two processors bit for bit.

    python -m benchmarks.kernel_fingerprint            # under the kit's kernel pin
    python -m benchmarks.kernel_fingerprint --unpinned # as torch chooses by itself

Prints one short SHA-256 per computation: float32 and float64 matrix products, a convolution with its
gradients, a linear layer with cross-entropy and its gradients, Adam steps (torch's default and the fused
one the kit uses), torch's sqrt, exp and log, and the kit's own square root, distances and gradient
clipping (metagen_utils.kernels). Two machines give the same numbers where every line agrees. torch's
sqrt, its default Adam and torch.cdist are there to show what the kit avoids: on a real AMD EPYC and an
emulated Intel Haswell they differed while every other line agreed. To compare processors you do not have, run it
under QEMU's user-mode emulator with another CPU model, e.g.

    qemu-x86_64 -cpu EPYC-Rome -0 .venv/bin/python "$(readlink -f .venv/bin/python)" -m benchmarks.kernel_fingerprint

The emulator computes exact IEEE arithmetic, so it stands in for another processor's matrix products and
convolutions; it does not reproduce the approximate instructions behind MKL's sqrt, so those lines can differ
between the emulator and any real processor.
"""
from __future__ import annotations

import argparse
import hashlib
import sys

from metagen_utils import kernels


def fingerprint() -> dict[str, str]:
    """One 12-character SHA-256 prefix per computation, from a fixed seed on one thread."""
    import torch  # after the pin: torch's libraries read it at their first computation

    torch.set_num_threads(1)    # MKL splits a product differently on more threads; one is comparable anywhere
    g = torch.Generator().manual_seed(0)
    out: dict[str, torch.Tensor] = {}
    for dtype in (torch.float32, torch.float64):
        a = torch.randn(64, 300, generator=g, dtype=dtype)
        b = torch.randn(300, 200, generator=g, dtype=dtype)
        out[f"matmul {dtype}"] = a @ b
        positive = torch.rand(5000, generator=g, dtype=dtype) + 0.1
        for name in ("sqrt", "exp", "log"):
            out[f"{name} {dtype}"] = getattr(torch, name)(positive)
    x = torch.randn(8, 1, 28, 28, generator=g, requires_grad=True)
    w = torch.randn(16, 1, 3, 3, generator=g, requires_grad=True)
    h = torch.nn.functional.conv2d(x, w, padding=1)
    h.square().sum().backward()
    out["conv2d"], out["conv2d grad w"], out["conv2d grad x"] = h, w.grad, x.grad
    features = torch.randn(8, 2704, generator=g, requires_grad=True)
    weight = torch.randn(10, 2704, generator=g, requires_grad=True)
    logits = torch.nn.functional.linear(features, weight)
    torch.nn.functional.cross_entropy(logits, torch.arange(8)).backward()
    out["linear"], out["linear grad w"] = logits, weight.grad
    for name, fused in (("adam (torch's default)", False), ("adam fused", True)):
        steps = torch.Generator().manual_seed(1)
        p = torch.randn(100_000, generator=steps, requires_grad=True)
        optimizer = torch.optim.Adam([p], 1e-3, fused=fused)
        for _ in range(5):
            p.grad = torch.randn(100_000, generator=steps)
            optimizer.step()
        out[name] = p
    rows, centres = torch.randn(40, 30, 64, generator=g), torch.randn(40, 5, 64, generator=g)
    out["torch.cdist"], out["kernels.distances"] = torch.cdist(rows, centres), kernels.distances(rows, centres)
    out["kernels.sqrt"] = kernels.sqrt(torch.rand(5000, generator=g) + 0.1)
    grads = [torch.zeros(300, 200, requires_grad=True), torch.zeros(1000, requires_grad=True)]
    for p in grads:
        p.grad = torch.randn(p.shape, generator=g) * 10
    out["kernels.clip_grad_norm"] = torch.cat([kernels.clip_grad_norm(grads, 1.0)[None], grads[0].grad.flatten()])
    return {name: hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()[:12]
            for name, t in out.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unpinned", action="store_true", help="leave the CPU kernels as torch picks them")
    args = parser.parse_args(argv)
    pinned = {} if args.unpinned else kernels.pin_cpu_kernels()
    import torch

    print(f"torch {torch.__version__}, kernels {torch.backends.cpu.get_cpu_capability()}, "
          f"pin: {' '.join(f'{k}={v}' for k, v in pinned.items()) or 'none'}")
    for name, digest in fingerprint().items():
        print(f"{name:24s} {digest}")


if __name__ == "__main__":
    main(sys.argv[1:])
