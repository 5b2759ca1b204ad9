"""Tests of metagen_utils.generation.classifier: Fréchet distance closed forms, prototype fidelity, diversity, and a
quickly trained classifier that tells unseen classes apart."""
import numpy as np
import pytest
import torch

from metagen_utils.generation.classifier import (GlyphClassifier, diversity, features, fidelity, fidelity_from_features,
                                      frechet_difference, frechet_distance, train_classifier)
from metagen_utils.errors import DataError
from metagen_utils.data.episodes import EpisodeSampler



pytestmark = pytest.mark.usefixtures("one_thread")

def gaussian_sample(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim))


def test_frechet_distance_of_a_set_with_itself_is_zero():
    a = gaussian_sample(200, 8, seed=0)
    assert abs(frechet_distance(a, a)) < 1e-8


def test_frechet_distance_of_a_shifted_copy_is_the_squared_shift():
    a, shift = gaussian_sample(300, 6, seed=1), np.arange(6) / 3.0
    assert frechet_distance(a, a + shift) == pytest.approx((shift ** 2).sum(), rel=1e-9)


def test_frechet_distance_of_a_doubled_copy_matches_the_gaussian_closed_form():
    # Σ_b = 4 Σ_a: tr Σ_a + tr 4Σ_a − 2 tr (Σ_a^½ 4Σ_a Σ_a^½)^½ = 5 tr Σ_a − 4 tr Σ_a = tr Σ_a.
    a = gaussian_sample(400, 5, seed=2) @ np.diag([1.0, 2.0, 0.5, 1.5, 3.0])
    b = 2 * a + 1.0
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(np.cov(a, rowvar=False))
    assert frechet_distance(a, b, ridge=0.0) == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("delta", [0.0, 1.0, 2.0])
def test_frechet_distance_between_gaussian_samples_approaches_the_squared_mean_shift(delta):
    a, b = gaussian_sample(20000, 3, seed=3), gaussian_sample(20000, 3, seed=4) + delta / np.sqrt(3)
    assert frechet_distance(a, b) == pytest.approx(delta ** 2, abs=0.02)


def test_frechet_distance_grows_with_the_mean_shift_and_is_finite_for_fewer_samples_than_dimensions():
    a = gaussian_sample(10, 32, seed=5)
    distances = [frechet_distance(a, gaussian_sample(10, 32, seed=6) + d) for d in (0.0, 0.5, 1.0, 2.0)]
    assert all(np.isfinite(distances)) and distances == sorted(distances)


def test_frechet_distance_rejects_mismatched_feature_sets_naming_the_shapes():
    with pytest.raises(DataError, match=r"same D; found \(5, 3\) and \(5, 4\)"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(DataError, match="n ≥ 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_fidelity_counts_the_samples_nearest_their_own_class_prototype():
    # Two classes with prototypes at 0 and 10 (means of their query features).
    query = torch.tensor([[[[-1.0], [1.0]], [[9.0], [11.0]]]])                 # [1 task, 2 way, 2 query, 1]
    generated = torch.tensor([[[[0.5], [4.0], [6.0]], [[9.0], [2.0], [12.0]]]])  # [1, 2, 3 samples, 1]
    torch.testing.assert_close(fidelity_from_features(generated, query), torch.tensor([[2 / 3, 2 / 3]]))


def test_fidelity_rejects_generated_and_query_sets_of_different_episodes():
    with pytest.raises(DataError, match=r"same tasks and n_way; found \(2, 5, 3, 8\) and \(2, 4, 3, 8\)"):
        fidelity_from_features(torch.zeros(2, 5, 3, 8), torch.zeros(2, 4, 3, 8))


def test_diversity_is_the_mean_pairwise_distance_and_zero_for_copies():
    image = torch.zeros(1, 2, 2)
    other = image.clone()
    other[0, 0, 0] = 3.0
    third = image.clone()
    third[0, 1, 1] = 4.0
    # Distances: |image − other| = 3, |image − third| = 4, |other − third| = 5.
    torch.testing.assert_close(diversity(torch.stack([image, other, third])), torch.tensor(4.0))
    torch.testing.assert_close(diversity(torch.stack([other] * 4)[None]), torch.tensor([0.0]))
    assert torch.isnan(diversity(image[None]))
    with pytest.raises(DataError, match=r"\[\.\.\., G, C, H, W\]; found shape \(3, 4\)"):
        diversity(torch.zeros(3, 4))


def test_features_keep_the_leading_dimensions_and_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    net = GlyphClassifier(num_classes=5).eval()
    images = torch.rand(2, 3, 4, 1, 28, 28)
    feats = features(net, images, batch_size=5)
    assert feats.shape == (2, 3, 4, 64)
    torch.testing.assert_close(feats[1, 2], features(net, images[1, 2]))


def test_fidelity_accepts_per_task_lists_with_different_sample_counts():
    torch.manual_seed(0)
    net = GlyphClassifier(num_classes=5).eval()
    generated, query = torch.rand(2, 3, 4, 1, 28, 28), torch.rand(2, 3, 5, 1, 28, 28)
    torch.testing.assert_close(fidelity(net, list(generated), list(query)), fidelity(net, generated, query))
    uneven = fidelity(net, [generated[0], generated[1, :, :2]], list(query))
    torch.testing.assert_close(uneven[0], fidelity(net, generated[:1], query[:1])[0])
    torch.testing.assert_close(uneven[1], fidelity(net, generated[1:, :, :2], query[1:])[0])


def small_background(glyph_set, classes: int):
    background = glyph_set.split("background")
    return background.select_classes(list(range(0, background.num_classes, background.num_classes // classes))[:classes])


def test_train_classifier_is_deterministic_given_a_seed(glyph_set):
    images = small_background(glyph_set, classes=5)
    first, second = (train_classifier(images, epochs=1, batch_size=25, seed=3) for _ in range(2))
    other = train_classifier(images, epochs=1, batch_size=25, seed=4)
    for (name, a), b, c in zip(first.state_dict().items(), second.state_dict().values(), other.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert not torch.equal(first.head.weight, other.head.weight)


@pytest.mark.slow
def test_real_support_images_are_faithful_to_their_class_with_a_quickly_trained_classifier(glyph_set):
    classifier = train_classifier(small_background(glyph_set, classes=300), epochs=2, seed=0)
    episode = EpisodeSampler(glyph_set.split("evaluation"), k_shot=5, n_query=15, n_way=5, seed=0).sample(8)
    support = episode.support.view(8, 5, 5, 1, 28, 28)
    query = episode.query.view(8, 5, 15, 1, 28, 28)
    real = fidelity(classifier, support, query).mean().item()
    shuffled = fidelity(classifier, support[:, torch.tensor([1, 2, 3, 4, 0])], query).mean().item()
    assert real > 0.5, f"real support fidelity {real:.2f}: the features do not separate unseen classes"
    assert shuffled < 0.2, f"support images under the wrong labels scored {shuffled:.2f}"


def feature_sets(shift: float = 0.0, tasks: int = 30, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    reference = torch.randn(tasks, 8, 4, generator=g, dtype=torch.float64)
    near = torch.randn(tasks, 6, 4, generator=g, dtype=torch.float64)
    far = torch.randn(tasks, 6, 4, generator=g, dtype=torch.float64) + shift
    return near, far, reference


def test_frechet_difference_is_the_difference_of_pooled_distances_with_an_interval_that_separates_a_shift():
    near, far, reference = feature_sets(shift=1.0)
    diff, half = frechet_difference(near, far, reference, seed=0)
    pooled = reference.reshape(-1, 4)
    expected = frechet_distance(near.reshape(-1, 4), pooled) - frechet_distance(far.reshape(-1, 4), pooled)
    assert diff == pytest.approx(expected, rel=1e-9)   # pooled moments from per-task sums, not np.cov
    assert diff < -2.0 and 0 < half < abs(diff)          # a shift of 1 in 4 dimensions: about −4
    assert frechet_difference(near, far, reference, seed=0) == (diff, half)   # one seed, one interval


def test_frechet_difference_of_a_generator_with_itself_is_zero_and_of_two_alike_ones_is_not_separated():
    near, _, reference = feature_sets()
    assert frechet_difference(near, near, reference) == (0.0, 0.0)
    other, _, _ = feature_sets(seed=1)
    diff, half = frechet_difference(near, other.clone(), reference)
    assert abs(diff) < half


def test_frechet_difference_rejects_mismatched_feature_sets():
    near, far, reference = feature_sets()
    with pytest.raises(DataError, match=r"frechet_difference: .*found \(30, 6, 4\), \(30, 5, 4\)"):
        frechet_difference(near, far[:, :5], reference)
    with pytest.raises(DataError, match="same T and D"):
        frechet_difference(near, far, reference[:10])
