"""The meta-step benchmark's equality check at tiny size: every path computes the same meta-gradient."""
import math
import sys
from pathlib import Path

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
