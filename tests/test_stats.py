"""Tests of metagen_utils.stats: PSNR values, t-intervals by hand, paired differences, formatting."""
import math

import numpy as np
import pytest
import torch

from metagen_utils.errors import ConfigError, DataError
from metagen_utils.stats import format_ci, mean_ci, paired_difference, psnr


def test_psnr_of_a_uniform_error_of_a_tenth_is_20_db_and_scales_with_max_value():
    target = np.zeros((3, 1, 4, 4))
    np.testing.assert_allclose(psnr(target + 0.1, target), [20.0] * 3)
    np.testing.assert_allclose(psnr(target + 0.1, target, max_value=2.0), [20.0 + 20 * math.log10(2)] * 3)


def test_psnr_scores_only_the_masked_pixels_and_a_perfect_match_is_infinite():
    target = torch.zeros(2, 4, dtype=torch.float64)
    pred = torch.tensor([[0.1, 0.1, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False, False]] * 2)
    scores = psnr(pred, target, mask)
    assert scores[0] == pytest.approx(20.0) and scores[1] == math.inf
    assert psnr(pred, target)[1] == pytest.approx(10 * math.log10(1 / 0.125))


def test_psnr_takes_a_mask_that_broadcasts_over_the_images():
    target = np.zeros((2, 1, 2, 2))
    pred = target.copy()
    pred[:, 0, 1, 1] = 1.0
    only_first_row = np.array([[[True, True], [False, False]]])
    assert (psnr(pred, target, only_first_row) == math.inf).all()


@pytest.mark.parametrize("call, message", [
    (lambda: psnr(np.zeros((2, 3)), np.zeros((2, 4))), "pred has shape (2, 3) but target has (2, 4)"),
    (lambda: psnr(np.ones((2, 3)), np.zeros((2, 3)), np.array([[1, 1, 1], [0, 0, 0]])), "image(s) [1]"),
    (lambda: psnr(np.ones((2, 3)), np.zeros((2, 3)), max_value=0), "max_value=0"),
])
def test_psnr_rejects_bad_input_naming_it(call, message):
    with pytest.raises((DataError, ConfigError)) as error:
        call()
    assert message in str(error.value)


def test_mean_ci_matches_a_hand_computed_t_interval():
    # mean 2.5, s = sqrt(5/3), t(0.975, 3) = 3.182446305284263 (tables), half = t · s / 2
    mean, half = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == pytest.approx(2.5)
    assert half == pytest.approx(3.182446305284263 * math.sqrt(5 / 3) / 2, rel=1e-9)
    _, half90 = mean_ci(np.array([1.0, 2.0, 3.0, 4.0]), level=0.90)   # t(0.95, 3) = 2.353363434801823
    assert half90 == pytest.approx(2.353363434801823 * math.sqrt(5 / 3) / 2, rel=1e-9)


def test_mean_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = [abs(m) <= h for m, h in (mean_ci(rng.normal(size=10)) for _ in range(2000))]
    assert 0.935 < np.mean(covered) < 0.965


@pytest.mark.parametrize("values, level, message", [
    ([1.0], 0.95, "found 1 value(s)"),
    ([1.0, float("nan"), 2.0], 0.95, "1 of 3 values are not finite"),
    ([1.0, 2.0], 95, "level=95"),
])
def test_mean_ci_rejects_bad_input_naming_it(values, level, message):
    with pytest.raises((DataError, ConfigError)) as error:
        mean_ci(values, level)
    assert message in str(error.value)


def test_paired_difference_removes_the_spread_the_two_methods_share():
    rng = np.random.default_rng(1)
    hardness = rng.normal(15, 3, size=200)          # some images are much easier than others
    a, b = hardness + 0.1 + rng.normal(0, 0.01, 200), hardness
    diff, half = paired_difference(a, b)
    assert diff == pytest.approx(0.1, abs=0.005) and half < 0.005
    assert mean_ci(a)[1] > 50 * half                 # the unpaired intervals would overlap completely


def test_paired_difference_rejects_scores_of_different_tasks():
    with pytest.raises(DataError, match=r"a has shape \(3,\) but b has \(4,\)"):
        paired_difference(np.zeros(3), np.zeros(4))


def test_format_ci_rounds_mean_and_half_width_alike():
    assert format_ci(16.654, 0.2071) == "16.65 ± 0.21"
    assert format_ci((16.654, 0.2071), decimals=1) == "16.7 ± 0.2"
    assert format_ci(-0.0049, 0.0123, decimals=3) == "-0.005 ± 0.012"


def test_clear_sign_is_the_sign_only_when_the_interval_excludes_zero():
    import doctest

    from metagen_utils import stats

    assert doctest.testmod(stats).failed == 0
    assert stats.clear_sign((0.1, 0.1)) == 0 and stats.clear_sign((-0.3, 0.29)) == -1
