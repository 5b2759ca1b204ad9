"""Notebook 05's evaluation (metagen_utils.inference.scoring): the three ways beside notebook 04's committed
model and its support-fitted Gaussian, on the same class-tasks and noise."""
import numpy as np
import pytest
import torch

from metagen_utils.errors import ConfigError
from metagen_utils.generation import pretrained
from metagen_utils.generation.classifier import GlyphClassifier
from metagen_utils.inference import scoring, set_vae as sv
# The checks of notebook 04's evaluation at lower temperatures.
from test_evaluation import check_cooled_scores

pytestmark = pytest.mark.usefixtures("one_thread")


def untrained(glyph_set) -> tuple:
    """The positional arguments of ``scoring.score_methods``: an untrained small class-code VAE for each
    way, an untrained classifier, notebook 04's committed weights."""
    torch.manual_seed(0)
    model = sv.ClassVAE(latent_dim=4, context_dim=6, width=4, hidden=8)
    trained = {method: sv.init_params(model, 0.1) for method in sv.METHODS}
    return model, trained, 1, GlyphClassifier(num_classes=3).eval(), glyph_set.split("evaluation"), pretrained.load()


def test_every_generator_is_scored_at_lower_temperatures_from_the_same_noise(glyph_set):
    args = untrained(glyph_set)
    small = dict(k_shots=(1,), n_episodes=1, n_way=3, n_query=3, n_samples=3, nll_images=1, is_samples=2)
    plain = scoring.score_methods(*args, **small)[1]
    cooled = scoring.score_methods(*args, temperatures=(0.0, 0.5), **small)[1]
    assert list(cooled) == [*sv.METHODS, *scoring.REFERENCES, "real support"]
    check_cooled_scores(plain, cooled, [0.0, 0.5], tasks=3)
    for method in sv.METHODS:   # τ = 0 decodes z = 0: one image per task however many are drawn
        assert np.abs(cooled[method]["temperatures"][0.0]["diversity"]).max() < 1e-4, method
        assert (plain[method]["diversity"] > 1e-3).all(), method
    with pytest.raises(ConfigError, match=r"temperatures=\(1.0,\); expected a list of numbers in \[0, 1\)"):
        scoring.score_methods(*args, temperatures=(1.0,), **small)
