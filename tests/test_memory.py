"""Memory held for backward: the peak of live saved storage, not the sum of every save."""
import doctest

import torch

from metagen_utils.meta import memory
from metagen_utils.meta.memory import held_for_backward


def test_storage_saved_twice_counts_once_and_the_peak_adds_what_is_alive_together():
    w = torch.ones(1000, requires_grad=True)
    held = held_for_backward(lambda: (w * w).exp().sum().backward())
    assert held == memory.Memory(peak=8000, total=12000)    # w (saved twice) and exp's output


def test_graphs_freed_along_the_way_do_not_add_to_the_peak():
    w = torch.ones(1000, requires_grad=True)

    def steps(keep_graphs: bool) -> None:
        kept = []
        for _ in range(5):
            loss = (w * torch.full((1000,), 2.0)).exp().sum()
            if keep_graphs:
                kept.append(loss)                         # every step's graph stays alive
            else:
                torch.autograd.grad(loss, w)              # this step's graph is freed here
    freed, kept = held_for_backward(lambda: steps(False)), held_for_backward(lambda: steps(True))
    assert freed.total == kept.total == 5 * 8000
    assert freed.peak == 8000 and kept.peak == 5 * 8000


def test_second_order_maml_s_peak_grows_with_inner_steps_and_first_order_s_does_not():
    from metagen_utils.meta import MetaConfig, meta_gradient, params_of
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    batch = (torch.randn(2, 5, 8), torch.randn(2, 5, 1), torch.randn(2, 5, 8), torch.randn(2, 5, 1))
    params = params_of(model)
    def peak(algorithm: str, k: int) -> int:
        cfg = MetaConfig(algorithm, inner_steps=k, inner_lr=0.1)
        return held_for_backward(lambda: meta_gradient(model, params, batch, cfg, torch.nn.functional.mse_loss,
                                                       vectorised=False), exclude=[*batch, *params.values()]).peak
    assert peak("maml", 5) > peak("maml", 2) > peak("maml", 1) > peak("fomaml", 1)
    assert peak("fomaml", 5) == peak("fomaml", 1)           # one step's graph at a time, whatever k


def test_the_docstring_example_holds():
    assert doctest.testmod(memory).failed == 0
