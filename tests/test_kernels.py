"""The kit's square roots, distances and clipping: the same bits on every processor (metagen_utils.kernels)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import torch

from metagen_utils import kernels

ROOT = Path(__file__).resolve().parents[1]


def positive(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) * 10 + 1e-3


def test_sqrt_is_the_reciprocal_of_a_correctly_rounded_reciprocal_root_so_no_bit_depends_on_the_processor():
    x = positive(100_000)
    exact = 1 / (1 / np.sqrt(x.numpy()))    # NumPy's float32 sqrt and division are correctly rounded (IEEE 754)
    assert torch.equal(kernels.sqrt(x), torch.from_numpy(exact))
    assert torch.equal(kernels.sqrt(torch.tensor([0.0, 4.0])), torch.tensor([0.0, 2.0]))


def test_sqrt_is_within_one_unit_in_the_last_place_and_differentiates_like_sqrt():
    x = positive(10_000, seed=1).double().requires_grad_()
    root = kernels.sqrt(x)
    torch.testing.assert_close(root, torch.from_numpy(np.sqrt(x.detach().numpy())), rtol=2.3e-16, atol=0)
    (grad,) = torch.autograd.grad(root.sum(), x)
    torch.testing.assert_close(grad, 0.5 / torch.from_numpy(np.sqrt(x.detach().numpy())))


def test_norms_take_correctly_rounded_square_roots():
    # distances and clip_grad_norm rest on torch.linalg.vector_norm. On two entries (a, b) it computes
    # fma(b, b, a²): a rounded square, then one fused multiply-add, both exact IEEE arithmetic (float64
    # holds a float32's square exactly). So the result shows whether its square root is correctly rounded.
    pairs = torch.randn(50_000, 2, generator=torch.Generator().manual_seed(2))
    a, b = pairs.numpy().astype(np.float64).T
    sum_of_squares = (b * b + (a * a).astype(np.float32)).astype(np.float32)
    assert torch.equal(torch.linalg.vector_norm(pairs, dim=-1), torch.from_numpy(np.sqrt(sum_of_squares)))


def test_distances_are_torch_cdist_s_and_broadcast_over_leading_dimensions():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(4, 30, 64, generator=g), torch.randn(1, 5, 64, generator=g)
    found = kernels.distances(a, b)
    assert found.shape == (4, 30, 5)
    torch.testing.assert_close(found, torch.cdist(a, b.expand(4, -1, -1)), rtol=1e-5, atol=1e-5)
    assert torch.equal(kernels.distances(a[0], a[0]).diagonal(), torch.zeros(30))


def grads_of(seed: int, scale: float) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.zeros(shape, requires_grad=True) for shape in ((30, 20), (7,))]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * scale
    return params


def test_clip_grad_norm_scales_like_torch_s_and_returns_the_norm_before_scaling():
    ours, theirs = grads_of(4, 3.0), grads_of(4, 3.0)
    norm = kernels.clip_grad_norm(ours, 1.0)
    torch.testing.assert_close(norm, torch.nn.utils.clip_grad_norm_(theirs, 1.0))
    assert norm > 1.0
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p.grad, q.grad)
    joint = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours]))
    assert abs(joint.item() - 1.0) < 1e-5


def test_clip_grad_norm_leaves_small_gradients_and_an_infinite_bound_alone():
    for params, bound in ((grads_of(5, 1e-3), 1.0), (grads_of(5, 100.0), math.inf)):
        before = [p.grad.clone() for p in params]
        kernels.clip_grad_norm(params, bound)
        assert all(torch.equal(p.grad, b) for p, b in zip(params, before))
    assert kernels.clip_grad_norm([torch.zeros(3, requires_grad=True)], 1.0).item() == 0.0


def sources() -> dict[str, str]:
    """The package's and the benchmarks' code, and every notebook's code cells, by file."""
    found = {str(p.relative_to(ROOT)): p.read_text() for folder in ("metagen_utils", "benchmarks")
             for p in sorted((ROOT / folder).rglob("*.py"))}
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        found[notebook.name] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return found


def calls(text: str, name: str) -> list[str]:
    """Each call ``name(...)`` in text, up to its closing parenthesis."""
    found = []
    for match in re.finditer(re.escape(name) + r"\(", text):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        found.append(text[match.start():end + 1])
    return found


def test_every_adam_the_kit_builds_is_fused_and_no_square_root_goes_through_torch_s_vector_math():
    unfused, roots = [], []
    for name, text in sources().items():
        if name == "benchmarks/kernel_fingerprint.py":   # it hashes torch's own paths too, to show the difference
            continue
        unfused += [f"{name}: {call}" for optimizer in ("torch.optim.Adam", "torch.optim.AdamW")
                    for call in calls(text, optimizer) if "fused=True" not in call]
        if name.endswith(".py"):
            code = "\n".join(line.split("#")[0] for line in text.splitlines())
            roots += [f"{name}: {word}" for word in ("torch.sqrt(", ".sqrt()", "clip_grad_norm_(", "torch.cdist(")
                      if word in code]
    assert not unfused, "build Adam with fused=True (see metagen_utils.kernels):\n" + "\n".join(unfused)
    assert not roots, "use kernels.sqrt, kernels.distances or kernels.clip_grad_norm:\n" + "\n".join(roots)
