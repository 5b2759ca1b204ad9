"""The CPU kernels the committed numbers were computed with, how the kit holds a process to them, and
the square roots it takes instead of torch's.

Imports nothing but the standard library, so that :func:`pin_cpu_kernels` can run before NumPy and
torch are imported; :func:`sqrt`, :func:`distances` and :func:`clip_grad_norm` take tensors and use
only their methods and ``torch.linalg``.
"""
from __future__ import annotations

import math
import os
import platform
import shlex
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

# The SIMD kernels the CPU libraries may use on x86-64. PyTorch's own kernels (ATen), oneDNN
# (convolutions), OpenBLAS (NumPy's linear algebra) and NumPy's own loops each pick the widest
# instructions the processor has, and AVX-512 kernels round differently from AVX2 ones: the same seed
# trained another classifier on an AVX-512 machine than on an AVX2 one, and every number downstream moved.
# Held at AVX2 (any x86-64 processor of the last decade has it), both give the same numbers. MKL (torch's
# matrix products and its sqrt, exp and log) also picks its code by the processor's maker: on an Intel and
# an AMD processor, both at AVX2, it rounded matrix products and square roots differently, and notebooks
# 03 and 04 moved. MKL_CBWR=COMPATIBLE runs one SSE2 code path on every x86-64 processor, whoever made it
# (MKL's "conditional numerical reproducibility"); it costs notebook 03 about a quarter of its time.
# NumPy's names are those of the pinned NumPy (2.4: X86_V4 is the AVX-512 level).
CPU_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE",
               "OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}


def pin_cpu_kernels() -> dict[str, str]:
    """Hold this process's CPU libraries, and every process it starts, at :data:`CPU_KERNELS` (x86-64
    only; a variable already set is left alone). Returns the settings in effect, ``{}`` elsewhere.

    The kit calls it where it owns the process: the harness, the command line, the test suite and the
    Jupyter kernel ``make setup`` installs. Importing the library sets nothing: a program that uses it
    keeps its own kernels. torch's libraries read their variable at their first computation, so calling
    this after ``import torch`` is in time; NumPy and OpenBLAS read theirs when NumPy is imported, so they
    hold in the processes started afterwards (notebook kernels).
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    for name, value in CPU_KERNELS.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in CPU_KERNELS}


def kernel_mismatch(capability: str, pinned: str) -> str | None:
    """Why this process's numbers may differ from the committed ones, or None: torch's CPU kernels run at
    ``capability`` (``torch.backends.cpu.get_cpu_capability()``) though ``ATEN_CPU_CAPABILITY`` is
    ``pinned``, the kit's AVX2 (:data:`CPU_KERNELS`), which happens when torch computed something
    before :func:`pin_cpu_kernels` ran. Another value set on purpose, or a processor without
    AVX-512, is not a mismatch."""
    if pinned.lower() != CPU_KERNELS["ATEN_CPU_CAPABILITY"] or not capability.upper().startswith("AVX512"):
        return None
    settings = " ".join(f"{name}={shlex.quote(value)}" for name, value in CPU_KERNELS.items())
    return (f"torch's CPU kernels run at {capability}, not {pinned.upper()}: torch computed something before "
            "the kernels were pinned, so the numbers can differ from the committed ones. Call "
            f"metagen_utils.kernels.pin_cpu_kernels() before computing with torch, or start Python with "
            f"{settings}.")


# Square roots. torch's element-wise sqrt on the CPU goes through MKL's vector math, which rounds the
# last bit by the processor it runs on, whatever MKL_CBWR says: on an AMD EPYC and on an emulated Intel
# Haswell it disagreed for about one float32 in nine. Adam divides by a square root at every step, and
# torch's gradient clipping and torch.cdist take one, so one seed trained other weights on an AMD machine
# than on an Intel one, and notebooks 03–05 moved. The processor's own square-root instruction is exact
# (IEEE 754 rounds it correctly) and so the same everywhere; torch uses it for reciprocal square roots,
# for norms (torch.linalg.vector_norm) and in its fused Adam (``fused=True``). The kit takes its square
# roots only there.


def sqrt(x: Tensor) -> Tensor:
    """√x element-wise (any shape), the same bits on every processor: ``1 / rsqrt(x)``, within one unit in
    the last place of torch's ``sqrt``. Differentiable; 0 gives 0."""
    return 1 / x.rsqrt()


def distances(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances ``[..., n, m]`` between the rows of ``a`` ``[..., n, D]`` and ``b`` ``[..., m, D]``
    (leading dimensions broadcast), as :func:`torch.cdist` gives them but the same bits on every processor.
    Takes one row of ``b`` at a time, so memory stays that of ``a``."""
    import torch

    return torch.stack([torch.linalg.vector_norm(a - b[..., j:j + 1, :], dim=-1) for j in range(b.shape[-2])], -1)


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """Scale the gradients of ``params`` in place so that their joint L2 norm is at most ``max_norm``
    (``math.inf``: leave them), as :func:`torch.nn.utils.clip_grad_norm_` does, but the same bits on every
    processor. Returns the norm before scaling (0-d); 0 when no parameter has a gradient."""
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if math.isfinite(max_norm):
        scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale)
    return total
