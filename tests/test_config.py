"""Tests of metagen_utils.config's resolution checks and of the CPU kernels the kit holds at AVX2."""
import json
import os
import platform
import subprocess
import sys
import warnings

import pytest
import torch

from metagen_utils import config, kernels

# The kernels are pinned after torch is imported (which imports NumPy itself) and before it computes anything
PIN = "from metagen_utils.kernels import pin_cpu_kernels; pin_cpu_kernels(); "
REPORT = ("import json, os, torch; import metagen_utils.kernels as c; "
          "from numpy._core._multiarray_umath import __cpu_features__ as found, __cpu_dispatch__ as dispatched; "
          "print(json.dumps({'env': {n: os.environ.get(n) for n in c.CPU_KERNELS}, "
          "'capability': torch.backends.cpu.get_cpu_capability(), "
          "'numpy': [f for f in dispatched if found.get(f)]}))")


def run_python(code: str, **env: str) -> dict:
    clean = {n: v for n, v in os.environ.items() if n not in kernels.CPU_KERNELS}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_importing_the_library_leaves_every_kernel_setting_alone():
    seen = run_python("import metagen_utils, metagen_utils.meta, metagen_utils.generation.vae\n" + REPORT)
    assert seen["env"] == dict.fromkeys(kernels.CPU_KERNELS)


def test_pinning_holds_the_cpu_kernels_at_avx2_before_torch_computes():
    seen = run_python(REPORT.replace("print(", PIN + "print(", 1))
    x86 = platform.machine().lower() in ("x86_64", "amd64")     # elsewhere these variables mean nothing
    expected = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE",
                "OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
    assert seen["env"] == (expected if x86 else dict.fromkeys(expected))
    # torch imported first, but nothing computed yet: the pin still takes (AVX2, or less on older CPUs)
    assert not seen["capability"].startswith("AVX512"), seen
    # NumPy fixes its loops when imported, after metagen_utils here: at the AVX2 level at most
    first = run_python(PIN + "\n" + REPORT)
    assert not {"X86_V4", "AVX512_ICL", "AVX512_SPR"} & set(first["numpy"]), first


def test_a_kernel_setting_the_caller_made_is_left_alone():
    seen = run_python(REPORT.replace("print(", PIN + "print(", 1), ATEN_CPU_CAPABILITY="default")
    assert seen["env"]["ATEN_CPU_CAPABILITY"] == "default"
    assert seen["capability"] == "DEFAULT"


def test_kernel_mismatch_names_the_variables_only_when_avx512_kernels_ran_despite_the_pin():
    problem = kernels.kernel_mismatch("AVX512", "avx2")
    assert "run at AVX512, not AVX2" in problem
    assert ("ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=COMPATIBLE "
            "OPENBLAS_CORETYPE=Haswell NPY_DISABLE_CPU_FEATURES='X86_V4 AVX512_ICL AVX512_SPR'") in problem
    # no pin in force, or another one chosen on purpose, or no AVX-512 to escape to: nothing to say
    for capability, pinned in (("AVX2", "avx2"), ("DEFAULT", "avx2"), ("AVX512", "default"), ("AVX512", ""),
                               ("AVX512", "avx512")):
        assert kernels.kernel_mismatch(capability, pinned) is None, (capability, pinned)


def test_resolve_warns_when_torch_s_kernels_are_not_the_pinned_ones(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    with pytest.warns(UserWarning, match="numbers can differ from the committed ones"):
        config.resolve("cpu", seed=0, device="cpu")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config.resolve("cpu", seed=0, device="cpu")
