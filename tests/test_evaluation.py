"""Tests of metagen_utils.generation.evaluation: the baselines of notebook 04 (support-fitted Gaussian, pooled latent
spread, fine-tuning) and the evaluation protocol that scores every method on the same class-tasks."""
import math

import numpy as np
import pytest
import torch

from metagen_utils.generation import evaluation as scoring

from metagen_utils.generation import vae as gen
from metagen_utils.generation.classifier import GlyphClassifier
from metagen_utils.errors import ConfigError
from metagen_utils.meta.maml import init_meta_params, params_of
# The small model and glyph tasks of the generation tests.
from test_generation import adapt_config, glyphs, vae  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")


def test_support_gaussian_is_centred_on_the_mean_of_the_support_posterior_means(glyph_set):
    model = vae()
    support = glyphs(glyph_set, 2, 3)[0]
    within, posterior_var = torch.full((4,), 0.5), torch.full((4,), 0.1)
    prior = scoring.support_gaussian(model, params_of(model), support, (within, posterior_var))["prior.bias"]
    mu = model.posterior(support.flatten(0, 1))[:, :4].view(2, 3, 4).mean(1)
    torch.testing.assert_close(prior[:, :4], mu.detach())
    torch.testing.assert_close(prior[:, 4:], torch.full((2, 4), math.log(0.5 * (1 + 1 / 3) + 0.1)))


def test_latent_spread_pools_the_within_class_variance_of_the_posterior_means(glyph_set):
    model = vae()
    images = glyph_set.split("background").select_classes([3, 10, 40])
    within, posterior_var = scoring.latent_spread(model, params_of(model), images, classes=3)
    with torch.no_grad():
        stats = model.posterior(torch.from_numpy(images.images))
    mu, labels = stats[:, :4], torch.from_numpy(images.labels)
    squares = sum(((mu[labels == c] - mu[labels == c].mean(0)) ** 2).sum(0) for c in range(3))
    torch.testing.assert_close(within, squares / (len(mu) - 3))
    torch.testing.assert_close(posterior_var, stats[:, 4:].exp().mean(0))


def test_finetuning_lowers_the_support_loss_and_leaves_the_prior_alone(glyph_set):
    model = vae()
    support = glyphs(glyph_set, 2, 3)[0]
    joint = params_of(model)
    tuned = scoring.finetune(model, joint, support, steps=8, lr=1e-3, generator=torch.Generator().manual_seed(0))
    assert not any(n.startswith(("prior", "context", "decoder.film")) for n in tuned)
    noise = torch.zeros(2, 3, 1, 4)                       # z at the posterior mean: the deterministic part
    with torch.no_grad():
        before = gen.per_task(model, joint, {}, "forward", support, noise).mean(1)
        after = gen.per_task(model, joint, tuned, "forward", support, noise).mean(1)
    assert torch.all(after < before)


def test_choose_finetune_lr_keeps_each_ks_rate_with_the_lowest_validation_nll_and_reports_each(glyph_set):
    model = vae()
    small = dict(k_shots=(1, 2), n_episodes=1, n_way=2, n_query=2, is_samples=2, seed=3)
    rates = (1e-4, 1e-2, 10.0)
    best, nlls = scoring.choose_finetune_lr(model, params_of(model), glyph_set.split("validation"), 1, rates=rates,
                                            **small)
    assert list(best) == list(nlls) == [1, 2]
    for k in (1, 2):
        assert list(nlls[k]) == list(rates) and math.isnan(nlls[k][10.0]), "a rate of 10 diverges"
        assert best[k] == 1e-2 and nlls[k][1e-2] < nlls[k][1e-4], "the lowest finite NLL wins"
    again = scoring.choose_finetune_lr(model, params_of(model), glyph_set.split("validation"), 1, rates=rates,
                                       **small)
    assert again[0] == best and all(np.allclose(list(again[1][k].values()), list(nlls[k].values()), equal_nan=True)
                                    for k in (1, 2)), "one seed, one answer"


def test_score_methods_fine_tunes_each_k_at_its_own_rate(glyph_set):
    args = untrained_evaluation(glyph_set)
    small = dict(k_shots=(1, 2), n_episodes=1, n_way=3, n_query=3, n_samples=2, nll_images=2, is_samples=2)
    mixed = scoring.score_methods(*args, finetune_lr={1: 1e-4, 2: 1e-2}, **small)
    name = "joint VAE, fine-tuned 4 steps"
    for k, rate in ((1, 1e-4), (2, 1e-2)):
        alone = scoring.score_methods(*args, finetune_lr=rate, **small)[k][name]
        np.testing.assert_array_equal(mixed[k][name]["nll"], alone["nll"])
    with pytest.raises(ConfigError, match=r"finetune_lr=\{1: 0.0001\} gives no value for K = \[2\]"):
        scoring.score_methods(*args, finetune_lr={1: 1e-4}, **small)


def untrained_evaluation(glyph_set) -> tuple:
    """The positional arguments of ``scoring.score_methods`` for an untrained model, classifier and spread."""
    model = vae()
    cfg = adapt_config(inner_steps=1)
    return (model, init_meta_params(model, cfg), params_of(model), cfg, GlyphClassifier(num_classes=3).eval(),
            glyph_set.split("evaluation"), (torch.ones(4), torch.full((4,), 0.1)))


def test_score_methods_scores_every_method_on_the_same_class_tasks(glyph_set):
    results = scoring.score_methods(*untrained_evaluation(glyph_set), k_shots=(1, 2), n_episodes=2, n_way=3, n_query=3,
                               n_samples=2, nll_images=1, is_samples=2)
    assert sorted(results) == [1, 2]
    methods = results[1]
    assert len(methods) == 7 and "real support" in methods
    for name, scores in methods.items():
        for key in ("nelbo", "nll", "fidelity", "diversity"):
            assert scores[key].shape == (6,), (name, key)
        assert math.isfinite(scores["frechet"])
        finite = name != "real support"
        assert bool(torch.isfinite(torch.from_numpy(scores["nll"])).all()) == finite, name
    adapted = methods["meta-learned, adapted"]
    assert (adapted["nll"] <= adapted["nelbo"] + 1e-3).all(), "the IS bound is never looser than the ELBO"


def test_score_methods_takes_a_number_of_test_steps_per_shot_count(glyph_set):
    args = untrained_evaluation(glyph_set)
    small = dict(k_shots=(1, 2), n_episodes=1, n_way=3, n_query=3, n_samples=2, nll_images=1, is_samples=2)
    mixed = scoring.score_methods(*args, steps={1: 1, 2: 3}, **small)
    assert "joint VAE, fine-tuned 1 steps" in mixed[1] and "joint VAE, fine-tuned 12 steps" in mixed[2]
    for k, steps in ((1, 1), (2, 3)):      # each K as if the run had used its number of steps for every K
        alone = scoring.score_methods(*args, steps=steps, **small)[k]
        for name in alone:
            for key in ("nll", "fidelity"):
                np.testing.assert_array_equal(mixed[k][name][key], alone[name][key], err_msg=f"K={k} {name} {key}")
    with pytest.raises(ConfigError, match=r"steps=\{1: 1\} gives no value for K = \[2\]"):
        scoring.score_methods(*args, steps={1: 1}, **small)


def check_cooled_scores(plain: dict, cooled: dict, temperatures: list, tasks: int) -> None:
    """``cooled`` (scores of one K with ``temperatures``) has every τ = 1 number of ``plain`` unchanged, and
    fidelity and diversity of each of ``tasks`` tasks at each τ for every generator (none for the real support)."""
    for name, scores in cooled.items():
        for key in ("nll", "fidelity", "diversity"):   # extra temperatures leave the τ = 1 numbers alone
            np.testing.assert_array_equal(scores[key], plain[name][key], err_msg=f"{name} {key}")
        if name == "real support":
            assert scores["temperatures"] == {}
            continue
        assert sorted(scores["temperatures"]) == temperatures, name
        assert all(v.shape == (tasks,) for t in scores["temperatures"].values() for v in t.values()), name


def test_score_methods_scores_fidelity_and_diversity_at_lower_temperatures_from_the_same_noise(glyph_set):
    args = untrained_evaluation(glyph_set)
    small = dict(k_shots=(1,), n_episodes=1, n_way=3, n_query=3, n_samples=3, nll_images=1, is_samples=2)
    plain = scoring.score_methods(*args, **small)[1]
    cooled = scoring.score_methods(*args, temperatures=(0.0, 0.5), **small)[1]
    check_cooled_scores(plain, cooled, [0.0, 0.5], tasks=3)
    # τ = 0 decodes the prior mean: one image per task however many samples are drawn
    assert np.abs(cooled["joint VAE, N(0, I) prior"]["temperatures"][0.0]["diversity"]).max() < 1e-4
    assert (plain["joint VAE, N(0, I) prior"]["diversity"] > 1e-3).all()
    with pytest.raises(ConfigError, match=r"temperatures=\(1.0,\); expected a list of numbers in \[0, 1\)"):
        scoring.score_methods(*args, temperatures=(1.0,), **small)


@pytest.mark.parametrize("bad", [[1.0], [-0.1], [0.5, 2], ["0.5"], "0.5", [float("nan")]])
def test_check_temperatures_names_a_bad_list_before_any_work(bad):
    with pytest.raises(ConfigError, match=r"temperatures=.*expected a list of numbers in \[0, 1\)"):
        scoring.check_temperatures(bad)


def test_check_temperatures_accepts_numbers_below_one_and_an_empty_list():
    for good in ([], (), [0.0, 0.4, 0.99], [0]):
        scoring.check_temperatures(good)


def test_score_adapted_gives_score_methods_s_adapted_scores_without_the_baselines(glyph_set):
    model, meta, _, cfg, classifier, images, _ = untrained_evaluation(glyph_set)
    small = dict(k_shots=(1, 2), n_episodes=2, n_way=3, n_query=3, n_samples=2, steps={1: 1, 2: 2}, seed=3)
    everything = scoring.score_methods(*untrained_evaluation(glyph_set), nll_images=1, is_samples=2, **small)
    alone = scoring.score_adapted(model, meta, cfg, classifier, images, **small)
    assert sorted(alone) == [1, 2]
    for k in (1, 2):
        expected = everything[k]["meta-learned, adapted"]
        assert set(alone[k]) == {"fidelity", "diversity", "frechet", "samples", "features", "reference_features"}
        for key in ("fidelity", "diversity"):
            np.testing.assert_array_equal(alone[k][key], expected[key], err_msg=f"K={k} {key}")
        torch.testing.assert_close(alone[k]["samples"], expected["samples"], rtol=0, atol=0)
        assert alone[k]["frechet"] == expected["frechet"]
    # another seed draws other tasks and noise: the equality above is not an accident of constant output
    other = scoring.score_adapted(model, meta, cfg, classifier, images, **{**small, "seed": 4})
    assert not torch.equal(other[1]["samples"], alone[1]["samples"])


def test_decode_latents_decodes_the_adapted_prior_s_draws_as_sample_does(glyph_set):
    model, cfg = vae(), adapt_config(adapt=("context", "decoder.up"))
    meta = init_meta_params(model, cfg)
    adapted = gen.adapt(model, meta, glyphs(glyph_set, 3, 2)[0], cfg, torch.Generator().manual_seed(0))
    mean, logvar = scoring._task_prior(model, meta, adapted)
    for t in range(3):     # [m; s] = W c + b with each task's adapted c
        by_hand = meta["prior.weight"] @ adapted["context"][t] + meta["prior.bias"]
        torch.testing.assert_close(torch.cat([mean[t], logvar[t]]), by_hand.detach())
    noise = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(1))
    latents = mean[:, None] + (0.5 * logvar).exp()[:, None] * noise
    decoded = scoring.decode_latents(model, meta, adapted, latents)
    sampled = gen.sample(model, meta, adapted, 4, torch.Generator().manual_seed(1))
    torch.testing.assert_close(decoded, sampled, rtol=1e-4, atol=1e-4)     # z computed outside vmap here
    # each task decodes with its own adapted layer and c: other tasks' give other images
    swapped = {n: t.roll(1, 0) for n, t in adapted.items()}
    assert not torch.allclose(scoring.decode_latents(model, meta, swapped, latents), decoded)


def test_score_adapted_breaks_its_fidelity_down_without_changing_it(glyph_set):
    model, meta, _, cfg, classifier, images, _ = untrained_evaluation(glyph_set)
    small = dict(k_shots=(1, 2), n_episodes=2, n_way=3, n_query=3, n_samples=2, seed=3)
    plain = scoring.score_adapted(model, meta, cfg, classifier, images, **small)
    broken = scoring.score_adapted(model, meta, cfg, classifier, images, breakdown=True, **small)
    supports, query, _ = scoring._class_tasks(model, classifier, images, 2, 2, 3, 3, 3)
    for k in (1, 2):
        assert "breakdown" not in plain[k] and list(broken[k]["breakdown"]) == list(scoring.BREAKDOWN)
        torch.testing.assert_close(broken[k]["samples"], plain[k]["samples"], rtol=0, atol=0)
        first = broken[k]["breakdown"]["adapted prior"]
        for key in ("fidelity", "diversity"):
            np.testing.assert_array_equal(first[key], plain[k][key])
        assert all(row["fidelity"].shape == (6,) for row in broken[k]["breakdown"].values())
        # mean_error: the adapted prior mean against the mean of the query images' posterior means
        adapted = gen.adapt(model, meta, supports[:, :k], cfg, torch.Generator().manual_seed(3000 + 10 * k))
        prior_mean = scoring._task_prior(model, meta, adapted)[0]
        held_out = gen.per_task(model, meta, adapted, "posterior", query)[..., :4].detach()      # [T, Q, L]
        np.testing.assert_allclose(broken[k]["mean_error"],
                                   ((prior_mean - held_out.mean(1)) ** 2).mean(-1).sqrt().numpy(), rtol=1e-6)
        np.testing.assert_allclose(broken[k]["class_scatter"], (held_out.std(1) ** 2).mean(-1).sqrt().numpy(),
                                   rtol=1e-6)
        # support_error: the support images' own mean posterior mean against the same class mean
        encoded = gen.per_task(model, meta, adapted, "posterior", supports[:, :k])[..., :4].detach().mean(1)
        np.testing.assert_allclose(broken[k]["support_error"],
                                   ((encoded - held_out.mean(1)) ** 2).mean(-1).sqrt().numpy(), rtol=1e-6)
        assert all((broken[k][key] > 0).all() for key in ("mean_error", "support_error", "class_scatter"))
    reconstructed = "support, encoded and decoded"      # one image per task at K = 1: no diversity
    assert np.isnan(broken[1]["breakdown"][reconstructed]["diversity"]).all()
    assert np.isfinite(broken[2]["breakdown"][reconstructed]["diversity"]).all()



def test_fidelity_breakdown_rows_decode_the_latents_they_name(glyph_set, monkeypatch):
    """Each row's decoder is fed its own centre plus its spread times the shared noise ε."""
    model, meta, _, cfg, classifier, images, _ = untrained_evaluation(glyph_set)
    supports, query, query_feats = scoring._class_tasks(model, classifier, images, 2, 2, 3, 3, 0)
    adapted = gen.adapt(model, meta, supports, cfg, torch.Generator().manual_seed(0))
    fed = []
    decode = scoring.decode_latents
    monkeypatch.setattr(scoring, "decode_latents", lambda *args: fed.append(args[3]) or decode(*args))
    noise = torch.randn(6, 5, 4, generator=torch.Generator().manual_seed(1))
    rows, _ = scoring.fidelity_breakdown(model, meta, adapted, supports, query, query_feats, classifier, 3, noise)
    assert list(rows) == list(scoring.BREAKDOWN[1:]) and len(fed) == len(rows)
    fed = dict(zip(rows, fed))
    mean, logvar = scoring._task_prior(model, meta, adapted)
    spread = (0.5 * logvar).exp()[:, None]
    encoded = gen.per_task(model, meta, adapted, "posterior", supports)[..., :4].detach()
    held_out = gen.per_task(model, meta, adapted, "posterior", query)[..., :4].detach()
    m_star, sd_star = held_out.mean(1, keepdim=True), held_out.std(1, keepdim=True)
    expected = {"support, encoded and decoded": encoded,
                "support mean, adapted spread": encoded.mean(1, keepdim=True) + spread * noise,
                "held-out mean, adapted spread": m_star + spread * noise,
                "adapted mean, held-out spread": mean[:, None] + sd_star * noise,
                "held-out mean and spread": m_star + sd_star * noise}
    for name, z in expected.items():
        torch.testing.assert_close(fed[name], z, msg=name)
