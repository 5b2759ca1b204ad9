"""metagen_utils: the tested library behind the metagen notebooks.

Modules, one responsibility each: ``config`` (profiles), ``data`` (image sets), ``glyphs`` (the embedded
data set), ``folders`` (local Omniglot-layout and class-per-folder data), ``preprocess`` (OpenCV),
``tasks`` (episodic K-shot sampling), ``plot`` (figures), ``results`` (metrics files), ``harness``
(executing the notebook series).
"""
import os
import platform

__version__ = "0.1.0"

# The SIMD kernels the CPU libraries may use on x86-64. PyTorch's own kernels (ATen), oneDNN
# (convolutions), MKL (torch's matrix products), OpenBLAS (NumPy's linear algebra) and NumPy's own loops
# each pick the widest instructions the processor has, and AVX-512 kernels round differently from AVX2
# ones: the same seed trained another classifier on an AVX-512 machine than on an AVX2 one, and every
# number downstream moved. Held at AVX2 (what the committed outputs were computed with; any x86-64
# processor of the last decade has it), both give the same numbers. torch's libraries read their variable
# at their first computation, so setting it here is in time even after `import torch` (config.resolve()
# warns if it was not); NumPy and OpenBLAS read theirs when NumPy is imported, so they hold in the
# processes the kit starts (the harness's and the tests' notebook kernels, `make lab`'s). NumPy's names
# are those of the pinned NumPy (2.4: X86_V4 is the AVX-512 level). A variable already set is left alone.
CPU_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
               "OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
if platform.machine().lower() in ("x86_64", "amd64"):
    for _name, _value in CPU_KERNELS.items():
        os.environ.setdefault(_name, _value)
