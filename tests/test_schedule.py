"""The one learning-rate schedule: warm-up, then a cosine to zero."""
import doctest

import torch

from metagen_utils.training import schedule
from metagen_utils.training.schedule import warmup_cosine, warmup_cosine_scheduler


def test_the_rate_warms_up_linearly_then_falls_along_a_cosine_and_the_last_step_still_moves():
    fractions = [warmup_cosine(s, 10, 2) for s in range(1, 11)]
    assert fractions[:3] == [0.5, 1.0, 1.0]       # warm-up, then the first cosine step at the full rate
    assert all(a > b for a, b in zip(fractions[2:], fractions[3:]))
    assert 0 < fractions[-1] < 0.1
    assert warmup_cosine(11, 10, 2) == 0.0 and warmup_cosine(50, 10, 2) == 0.0   # past the end: zero


def test_without_warm_up_the_first_step_runs_at_the_full_rate():
    assert warmup_cosine(1, 5, 0) == 1.0


def test_the_scheduler_gives_each_update_the_functions_rate():
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.3)
    scheduler = warmup_cosine_scheduler(optimizer, 8, 3)
    seen = []
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == [0.3 * warmup_cosine(s, 8, 3) for s in range(1, 9)]


def test_the_docstring_example_holds():
    assert doctest.testmod(schedule).failed == 0
