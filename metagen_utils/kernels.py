"""The CPU kernels the committed numbers were computed with, and how the kit holds a process to them.

Imports nothing but the standard library, so that :func:`pin_cpu_kernels` can run before NumPy and
torch are imported.
"""
from __future__ import annotations

import os
import platform
import shlex

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
