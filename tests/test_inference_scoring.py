"""Notebook 05's evaluation (metagen_utils.inference.scoring): the three ways beside notebook 04's committed
model and its support-fitted Gaussian, on the same class-tasks and noise."""
import numpy as np
import pytest
import torch

from metagen_utils.errors import ConfigError
from metagen_utils.generation import evaluation as old_scoring, pretrained
from metagen_utils.generation.classifier import GlyphClassifier
from metagen_utils.inference import scoring, set_vae as sv
# The checks of notebook 04's evaluation at lower temperatures.
from test_evaluation import check_cooled_scores

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(n_episodes=1, n_way=3, n_query=3, n_samples=3, nll_images=1, is_samples=2)


def untrained() -> dict:
    """Each way with an untrained small class-code VAE."""
    torch.manual_seed(0)
    model = sv.ClassVAE(latent_dim=4, context_dim=6, width=4, hidden=8)
    return {method: (model, method, sv.init_params(model, 0.1)) for method in sv.METHODS}


def references(glyph_set, **settings) -> scoring.Evaluation:
    """Notebook 04's committed model and its Gaussian on small episodes of the evaluation split, judged
    by an untrained classifier."""
    return scoring.score_references(GlyphClassifier(num_classes=3).eval(), glyph_set.split("evaluation"),
                                    pretrained.load(), **{**SMALL, **settings})


def test_every_generator_is_scored_at_lower_temperatures_from_the_same_noise(glyph_set):
    plain = scoring.score_methods(untrained(), 1, references(glyph_set, k_shots=(1,)))[1]
    cooled = scoring.score_methods(untrained(), 1, references(glyph_set, k_shots=(1,), temperatures=(0.0, 0.5)))[1]
    assert list(cooled) == [*sv.METHODS, *scoring.REFERENCES, "real support"]
    check_cooled_scores(plain, cooled, [0.0, 0.5], tasks=3)
    for method in sv.METHODS:   # τ = 0 decodes z = 0: one image per task however many are drawn
        assert np.abs(cooled[method]["temperatures"][0.0]["diversity"]).max() < 1e-4, method
        assert (plain[method]["diversity"] > 1e-3).all(), method
    with pytest.raises(ConfigError, match=r"temperatures=\(1.0,\); expected a list of numbers in \[0, 1\)"):
        references(glyph_set, temperatures=(1.0,))


def test_notebook_04_s_model_scores_as_notebook_04_scores_it_on_the_same_tasks(glyph_set):
    evaluation = references(glyph_set, breakdown=True)
    weights, classifier = pretrained.load(), evaluation.classifier
    alone = old_scoring.score_adapted(weights.model(), weights.meta, weights.meta_config(), classifier,
                                      glyph_set.split("evaluation"), steps=weights.test_steps(), breakdown=True,
                                      **{key: SMALL[key] for key in ("n_episodes", "n_way", "n_query", "n_samples")})
    for k in (1, 5):
        ours = evaluation.scores[k][scoring.REFERENCES[0]]
        np.testing.assert_array_equal(ours["fidelity"], alone[k]["fidelity"])
        assert list(ours["breakdown"]) == list(old_scoring.BREAKDOWN)
        for row in old_scoring.BREAKDOWN:
            np.testing.assert_array_equal(ours["breakdown"][row]["fidelity"], alone[k]["breakdown"][row]["fidelity"])
        np.testing.assert_array_equal(ours["mean_error"], alone[k]["mean_error"])


def test_the_breakdown_samples_a_way_from_its_held_out_code_with_its_own_noise(glyph_set):
    # With no inner steps the gradient way's c is c₀ whatever the images: the held-out code is the
    # support's, so its row must repeat the way's own samples exactly (the same noise, paired).
    ways = untrained()
    scores = scoring.score_methods(ways, 0, references(glyph_set), breakdown=sv.METHODS)
    for k in (1, 5):
        rows = scores[k]["gradient"]["breakdown"]
        assert list(rows) == list(scoring.BREAKDOWN)
        np.testing.assert_array_equal(rows["own samples"]["fidelity"], scores[k]["gradient"]["fidelity"])
        np.testing.assert_array_equal(rows["code from held-out images"]["fidelity"], scores[k]["gradient"]["fidelity"])
        redrawn = rows["support, encoded and decoded"]
        assert ((redrawn["fidelity"] >= 0) & (redrawn["fidelity"] <= 1)).all()
        assert np.isnan(redrawn["diversity"]).all() == (k == 1)     # one redrawn image per task at K = 1
    # The set encoder reads the images: from other images, another code and other samples.
    hybrid = scores[5]["hybrid"]["breakdown"]["code from held-out images"]["diversity"]
    assert not np.array_equal(hybrid, scores[5]["hybrid"]["diversity"])
    assert "breakdown" not in scores[1]["real support"]
    with pytest.raises(ConfigError, match=r"breakdown=\['hybird'\]: \['hybird'\] are not among the ways"):
        scoring.score_methods(ways, 0, references(glyph_set), breakdown=["hybird"])


def test_generators_of_different_sizes_are_scored_side_by_side_under_any_name(glyph_set):
    ways = untrained()
    torch.manual_seed(1)
    wide = sv.ClassVAE(latent_dim=4, context_dim=6, width=6, hidden=8)
    more = {**ways, "hybrid, wider": (wide, "hybrid", sv.init_params(wide, 0.1))}
    evaluation = references(glyph_set, k_shots=(1,))
    scores = scoring.score_methods(more, 1, evaluation)[1]
    assert list(scores) == [*sv.METHODS, "hybrid, wider", *scoring.REFERENCES, "real support"]
    assert scores["hybrid, wider"]["samples"].shape == scores["hybrid"]["samples"].shape == (3, 3, 1, 28, 28)
    alone = scoring.score_methods({"hybrid": ways["hybrid"]}, 1, evaluation)[1]["hybrid"]
    np.testing.assert_array_equal(alone["nll"], scores["hybrid"]["nll"])   # the same noise, with or without others
    with pytest.raises(ConfigError, match="method='greedy' is not valid"):
        scoring.score_methods({"x": (wide, "greedy", more["hybrid, wider"][2])}, 1, evaluation)


def test_refitting_the_gaussian_retrains_only_its_vae_on_the_given_classes(glyph_set):
    committed, background = pretrained.load(), glyph_set.split("background")
    refit = scoring.refit_gaussian(committed, background, seed=3, steps=2)
    again = scoring.refit_gaussian(committed, background, seed=3, steps=2)
    for name, tensor in committed.meta.items():         # notebook 04's meta-learned model is untouched
        assert torch.equal(refit.meta[name], tensor), name
    assert set(refit.joint) == set(committed.joint)
    assert any(not torch.equal(refit.joint[n], committed.joint[n]) for n in committed.joint)
    assert all(torch.equal(refit.joint[n], again.joint[n]) for n in refit.joint)     # one seed, one result
    within, posterior_var = refit.spread
    assert within.shape == committed.spread[0].shape and (within > 0).all() and (posterior_var > 0).all()
    assert not torch.equal(within, committed.spread[0])
    # What it is for: the baselines of score_references now start from the refitted VAE.
    classifier, evaluated = GlyphClassifier(num_classes=3).eval(), glyph_set.split("evaluation")
    before, after = (scoring.score_references(classifier, evaluated, weights, k_shots=(1,), **SMALL).scores[1]
                     for weights in (committed, refit))
    old_model, gaussian = scoring.REFERENCES
    np.testing.assert_array_equal(after[old_model]["nll"], before[old_model]["nll"])
    assert not np.array_equal(after[gaussian]["nll"], before[gaussian]["nll"])


def test_a_way_with_a_prior_changes_only_its_samples_and_priors_must_match_the_ways(glyph_set):
    ways, evaluation = untrained(), references(glyph_set)
    background = glyph_set.split("background")
    model, _, params = ways["hybrid"]
    fitted = {k: sv.fit_latent_prior(model, params, "hybrid", background, k, 1, classes=20) for k in (1, 5)}
    plain = scoring.score_methods(ways, 1, evaluation)
    near = scoring.score_methods(ways, 1, evaluation, priors={"hybrid": fitted})
    for k in (1, 5):
        np.testing.assert_array_equal(near[k]["hybrid"]["nll"], plain[k]["hybrid"]["nll"])   # no sampling
        assert not np.array_equal(near[k]["hybrid"]["samples"], plain[k]["hybrid"]["samples"])
        for way in ("gradient", "amortised"):                                           # no prior: as before
            np.testing.assert_array_equal(near[k][way]["samples"], plain[k][way]["samples"])
    quick = scoring.score_methods(ways, 1, evaluation, priors={"hybrid": fitted}, likelihood=False)
    for k in (1, 5):   # without the likelihood scores, the same samples and fidelity
        assert np.isnan(quick[k]["hybrid"]["nll"]).all() and np.isnan(quick[k]["hybrid"]["nelbo"]).all()
        np.testing.assert_array_equal(quick[k]["hybrid"]["fidelity"], near[k]["hybrid"]["fidelity"])
    with pytest.raises(ConfigError, match=r"priors: \['hybird'\] are not among the ways"):
        scoring.score_methods(ways, 1, evaluation, priors={"hybird": fitted})
    with pytest.raises(ConfigError, match=r"priors: \['hybrid'\] lack a LatentPrior for some K of \[1, 5\]"):
        scoring.score_methods(ways, 1, evaluation, priors={"hybrid": {1: fitted[1]}})
