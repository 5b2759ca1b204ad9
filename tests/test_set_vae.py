"""The class-code VAE of notebook 05 and its three ways to find c: gradient, amortised, hybrid."""
from __future__ import annotations

import dataclasses
import doctest

import numpy as np
import pytest
import torch

from metagen_utils.errors import ConfigError, DataError, MetaLearningError
from metagen_utils.inference import set_vae as sv


pytestmark = pytest.mark.usefixtures("one_thread")


def small_model(seed: int = 0) -> tuple[sv.ClassVAE, dict]:
    torch.manual_seed(seed)
    model = sv.ClassVAE(latent_dim=4, context_dim=6, width=4, hidden=8)
    return model, sv.init_params(model, 0.1)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_the_set_encoder_gives_one_code_for_any_order_of_the_images():
    model, _ = small_model()
    support = images(5)
    c = model.infer(support)
    assert c.shape == (6,)
    torch.testing.assert_close(model.infer(support[[3, 0, 4, 2, 1]]), c)
    assert not torch.allclose(model.infer(support[:1]), c)


def test_the_decoder_reads_c_before_any_training():
    model, params = small_model()
    noise = torch.randn(3, 4)
    a = sv.call(model, {**params, "context": torch.zeros(6)}, "decode", noise)
    b = sv.call(model, {**params, "context": torch.ones(6)}, "decode", noise)
    assert a.shape == (3, 1, 28, 28) and not torch.allclose(a, b)


def test_the_amortised_code_is_the_set_encoder_s_and_the_gradient_start_is_c0():
    model, params = small_model()
    support, noise = images(3), torch.randn(3, 1, 4)
    torch.testing.assert_close(sv.infer_context(model, params, "amortised", support, noise, steps=3),
                               model.infer(support))
    torch.testing.assert_close(sv.infer_context(model, params, "gradient", support, noise, steps=0),
                               params["context"])


@pytest.mark.parametrize("method", ["gradient", "hybrid"])
def test_the_inner_steps_are_plain_gradient_steps_with_the_learned_rates(method):
    model, params = small_model()
    with torch.no_grad():
        params[sv.RATE].copy_(torch.linspace(0.05, 0.3, 6))
    support, noise = images(4), torch.randn(4, 1, 4)
    c = (params["context"] if method == "gradient" else model.infer(support)).detach()
    for _ in range(2):
        c = c.requires_grad_()
        loss = sv.call(model, {**params, "context": c}, "forward", support, noise).mean()
        c = (c - params[sv.RATE] * torch.autograd.grad(loss, c)[0]).detach()
    torch.testing.assert_close(sv.infer_context(model, params, method, support, noise, steps=2), c)


def test_a_batch_of_tasks_gives_each_task_the_code_it_gets_alone():
    model, params = small_model()
    supports = images(6).view(2, 3, 1, 28, 28)
    codes = sv.contexts(model, params, "hybrid", supports, 2, torch.Generator().manual_seed(0))
    noise = torch.randn(2, 3, 1, 4, generator=torch.Generator().manual_seed(0))
    for t in range(2):
        torch.testing.assert_close(sv.infer_context(model, params, "hybrid", supports[t], noise[t], 2), codes[t])


def test_codes_that_diverge_in_the_inner_steps_stop_with_the_tasks_named():
    model, params = small_model()
    supports = images(6).view(2, 3, 1, 28, 28)
    with torch.no_grad():
        params[sv.RATE].fill_(float("inf"))      # any step from any start leaves the finite numbers
    with pytest.raises(MetaLearningError, match=r"contexts \(hybrid, 2 inner steps\): the class code of 2 of 2 "
                                                r"tasks is not finite \(tasks \[0, 1\]\); take fewer inner steps"):
        sv.contexts(model, params, "hybrid", supports, 2, torch.Generator().manual_seed(0))
    assert torch.isfinite(sv.contexts(model, params, "amortised", supports, 2, torch.Generator())).all()


def test_encode_gives_the_mean_of_q_the_z_of_zero_noise():
    model, params = small_model()
    tasks = images(6, seed=4).view(2, 3, 1, 28, 28)
    coded = {**params, "context": torch.randn(2, model.context_dim)}
    mu, _, z, _ = sv.call(model, coded, "_reconstruct", tasks, torch.zeros(2, 3, 1, model.latent_dim))
    torch.testing.assert_close(sv.call(model, coded, "encode", tasks), mu)
    torch.testing.assert_close(z[:, :, 0], mu)


def test_the_importance_sampled_nll_is_never_above_the_elbo_bound():
    model, params = small_model()
    codes = torch.randn(2, 6)
    nelbo, nll = sv.query_scores(model, params, codes, images(6).view(2, 3, 1, 28, 28), 8,
                                 torch.Generator().manual_seed(0))
    assert nelbo.shape == nll.shape == (2, 3) and (nll <= nelbo + 1e-4).all()


def test_a_context_of_the_wrong_shape_for_the_images_is_refused_with_both_shapes():
    model, params = small_model()
    with pytest.raises(DataError, match=r"leading dimensions \(2, 3\) need context of shape \(2, 6\); found \(6,\)"):
        sv.call(model, params, "forward", images(6).view(2, 3, 1, 28, 28), torch.randn(2, 3, 1, 4))


def test_samples_have_the_shape_asked_for_and_pixels_in_0_1():
    model, params = small_model()
    out = sv.sample(model, params, torch.randn(3, 6), 4, torch.Generator().manual_seed(0))
    assert out.shape == (3, 4, 1, 28, 28) and ((out >= 0) & (out <= 1)).all()


def test_the_kl_weight_falls_from_start_to_end_and_stays():
    assert doctest.testmod(sv).failed == 0
    weights = [sv.kl_weight(s, 100, 8.0, 2.0, 0.6) for s in range(1, 101)]
    assert weights[0] == 8.0 and weights[59] == 2.0 and weights[-1] == 2.0
    assert all(a >= b for a, b in zip(weights, weights[1:]))


def test_residual_blocks_start_as_the_identity_and_the_settings_choose_them():
    plain, params = small_model()
    torch.manual_seed(0)
    deep = sv.ClassVAE.from_settings({"latent_dim": 4, "context_dim": 6, "width": 4, "hidden": 8, "blocks": 2})
    extra = {n: t for n, t in sv.init_params(deep, 0.1).items() if n not in params}
    assert sorted(extra) == [f"decoder.refine.{i}.{w}" for i in range(2) for w in ("bias", "weight")]
    assert all(not t.any() for t in extra.values())           # zero: each block adds nothing yet
    noise = torch.randn(3, 4)
    torch.testing.assert_close(sv.call(deep, {**params, **extra}, "decode", noise),
                               sv.call(plain, params, "decode", noise))
    assert len(sv.ClassVAE.from_settings({"latent_dim": 4, "context_dim": 6, "width": 4,
                                          "hidden": 8}).decoder.refine) == 0   # a checkpoint without blocks
    with pytest.raises(ConfigError, match="blocks=-1"):
        sv.ClassVAE(blocks=-1)


def test_bad_settings_name_the_value_and_what_was_expected(glyph_set):
    model, params = small_model()
    with pytest.raises(ConfigError, match="method='maml' is not valid; expected one of"):
        sv.infer_context(model, params, "maml", images(2), torch.randn(2, 1, 4), 1)
    with pytest.raises(ConfigError, match="width=0"):
        sv.ClassVAE(width=0)
    with pytest.raises(DataError, match=r"expected images \[\(T,\) n, 1, 28, 28\]"):
        model(torch.rand(2, 1, 14, 14), torch.randn(2, 1, 4))
    with pytest.raises(ConfigError, match="steps=0"):
        sv.train(model, params, "hybrid", glyph_set.split("background"), steps=0)


def trained(glyph_set, method: str, seed: int = 0, steps: int = 6) -> tuple[list[float], dict]:
    background = glyph_set.split("background").select_classes(list(range(30)))
    model, params = small_model()
    losses = sv.train(model, params, method, background, steps, tasks_per_step=4, seed=seed, progress=False)
    return losses, params


def test_training_moves_what_the_method_learns_and_leaves_the_rest(glyph_set):
    _, start = small_model()
    for method, moves_c0, moves_rate in (("amortised", False, False), ("gradient", True, True),
                                         ("hybrid", False, True)):
        _, params = trained(glyph_set, method)
        assert not torch.equal(params["decoder.fc.weight"], start["decoder.fc.weight"]), method
        assert torch.equal(params["context"], start["context"]) != moves_c0, method
        assert torch.equal(params[sv.RATE], start[sv.RATE]) != moves_rate, method


def test_one_seed_gives_one_training_run(glyph_set):
    a, pa = trained(glyph_set, "hybrid")
    b, pb = trained(glyph_set, "hybrid")
    assert a == b and all(torch.equal(pa[n], pb[n]) for n in pa)
    assert trained(glyph_set, "hybrid", seed=1)[0] != a


@pytest.mark.slow
@pytest.mark.parametrize("method", sv.METHODS)
def test_a_short_run_at_the_cpu_settings_never_climbs_above_its_first_loss(glyph_set, method):
    from metagen_utils import profiles

    s = profiles.SET_VAE["cpu"]
    torch.manual_seed(0)
    model = sv.ClassVAE.from_settings(s)
    params = sv.init_params(model, s["initial_rate"])
    losses = sv.train(model, params, method, glyph_set.split("background"), 80, tasks_per_step=s["tasks_per_step"],
                      n_query=s["n_query"], lr=s["lr"], inner_steps=s["inner_steps"], beta=s["kl_weight"],
                      progress=False)
    assert all(0 < loss <= 1.02 * losses[0] for loss in losses), losses
    assert min(losses[-10:]) < 0.9 * losses[0]          # and it learns


def test_a_number_for_beta_holds_the_kl_weight_and_a_copy_trains_on_its_own(glyph_set):
    background = glyph_set.split("background").select_classes(list(range(30)))
    _, start = small_model()
    runs = []
    for beta in (2.0, (2.0, 2.0, 0.6)):
        params = sv.copy_params(start)
        runs.append(sv.train(small_model()[0], params, "hybrid", background, 4, tasks_per_step=4, beta=beta,
                             progress=False))
    assert runs[0] == runs[1]
    assert all(torch.equal(start[n], small_model()[1][n]) for n in start)   # the start is left as it was


def test_the_latent_prior_is_bayes_rule_for_a_gaussian_centre():
    # One dimension, B = 3 and W = 2: the centre's posterior after K observations with mean x̄ has mean
    # B / (B + W / K) · x̄ and variance B − B² / (B + W / K); a new z adds W.
    prior = sv.LatentPrior(between=torch.tensor([[3.0]], dtype=torch.float64),
                           within=torch.tensor([[2.0]], dtype=torch.float64))
    means = torch.tensor([[[1.0], [2.0], [4.0]]])                  # [T = 1, K = 3, L = 1]
    centre, scale = prior.given(means)
    gain = 3 / (3 + 2 / 3)
    assert centre.item() == pytest.approx(gain * 7 / 3, rel=1e-6)
    assert (scale @ scale.T).item() == pytest.approx(3 - gain * 3 + 2, rel=1e-6)
    assert centre.dtype == scale.dtype == torch.float32


def test_the_more_support_images_the_closer_the_centre_to_their_mean():
    b = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    prior = sv.LatentPrior(between=b, within=4 * torch.eye(2, dtype=torch.float64))
    gaps = []
    for k in (1, 5, 50, 5000):
        means = torch.tensor([2.0, -1.0]).expand(1, k, 2)
        centre, scale = prior.given(means)
        gaps.append((centre[0] - torch.tensor([2.0, -1.0])).norm().item())
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.01 and gaps[0] > 1


def test_a_prior_moves_only_where_z_is_drawn_from_the_same_noise():
    model, params = small_model()
    codes, support = torch.randn(2, 6), images(6).view(2, 3, 1, 28, 28)
    prior = sv.LatentPrior(between=torch.eye(4, dtype=torch.float64), within=torch.eye(4, dtype=torch.float64))
    near = sv.sample(model, params, codes, 5, torch.Generator().manual_seed(0), prior=prior, support=support)
    centre, scale = prior.given(sv.call(model, {**params, "context": codes}, "encode", support).detach())
    noise = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
    by_hand = sv.call(model, {**params, "context": codes}, "decode", centre[:, None] + noise @ scale.T)
    torch.testing.assert_close(near, by_hand.detach())
    at_centre = sv.sample(model, params, codes, 1, torch.Generator(), temperature=0.0, prior=prior, support=support)
    torch.testing.assert_close(at_centre[:, 0], sv.call(model, {**params, "context": codes}, "decode",
                                                         centre[:, None])[:, 0].detach())
    with pytest.raises(ConfigError, match=r"a prior needs the support of each of the 2 tasks"):
        sv.sample(model, params, codes, 5, torch.Generator(), prior=prior)


def test_the_fitted_prior_is_symmetric_positive_and_one_seed_gives_one_fit(glyph_set):
    model, params = small_model()
    background = glyph_set.split("background")
    fits = [sv.fit_latent_prior(model, params, "hybrid", background, 5, 1, classes=30, seed=3) for _ in range(2)]
    for matrix in (fits[0].between, fits[0].within):
        assert matrix.shape == (4, 4) and matrix.dtype == torch.float64
        torch.testing.assert_close(matrix, matrix.T)
        assert torch.linalg.eigvalsh(matrix).min() > 0
    assert torch.equal(fits[0].between, fits[1].between) and torch.equal(fits[0].within, fits[1].within)


def test_a_prior_needs_two_classes_with_two_images_and_says_what_it_found(glyph_set):
    model, params = small_model()
    one_each = glyph_set.select_classes([0, 1])
    keep = np.concatenate([np.flatnonzero(one_each.labels == c)[:1] for c in (0, 1)])
    tiny = dataclasses.replace(one_each, images=one_each.images[keep], labels=one_each.labels[keep], files=())
    with pytest.raises(DataError, match=r"has 2 classes with at least 1 images each; it needs 2 classes or more"):
        sv.fit_latent_prior(model, params, "hybrid", tiny, 1, 1)
