"""Tests of metagen_utils.completion: tasks, the k-step closed form, the conditional means, MAML, determinism."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metagen_utils import completion as C
from metagen_utils.data.images import ImageSet
from metagen_utils.errors import ConfigError, DataError
from metagen_utils.meta.maml import MetaConfig, inner_loop

F64 = torch.float64


def image_set(num_classes: int = 6, per_class: int = 4, size: int = 8, channels: int = 1, seed: int = 0,
              images: np.ndarray | None = None) -> ImageSet:
    rng = np.random.default_rng(seed)
    if images is None:
        images = rng.random((num_classes * per_class, channels, size, size)).astype(np.float32)
    num_classes = len(images) // per_class
    return ImageSet(images=images, labels=np.repeat(np.arange(num_classes), per_class),
                    classes=tuple(f"c{i}" for i in range(num_classes)), alphabets=("a",) * num_classes,
                    splits=("background",) * num_classes, name="synthetic")


def low_rank_images(count: int, size: int = 8, rank: int = 3, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Images x = μ + L z (+ noise): a Gaussian of rank ``rank``, ``[count, 1, size, size]``."""
    rng = np.random.default_rng(seed)
    mean = rng.random(size * size)
    basis = rng.normal(0, 0.2, (size * size, rank))
    pixels = mean + rng.normal(size=(count, rank)) @ basis.T + noise * rng.normal(size=(count, size * size))
    return pixels.reshape(count, 1, size, size)


def test_tasks_split_every_image_into_disjoint_observed_and_unobserved_pixels():
    images = image_set()
    tasks = C.make_tasks(images, num_tasks=5, observed=0.25, seed=0)
    assert tasks.pixels.shape == (5, 64) and tasks.observed.shape == (5, 16) and tasks.unobserved.shape == (5, 48)
    for t in range(5):
        together = torch.cat([tasks.observed[t], tasks.unobserved[t]]).sort().values
        assert torch.equal(together, torch.arange(64))
        flat = images.images[tasks.image_ids[t]].reshape(-1)
        torch.testing.assert_close(tasks.pixels[t], torch.as_tensor(flat, dtype=F64))
    assert tasks.observed_mask().sum(1).tolist() == [16] * 5
    assert len(set(images.labels[tasks.image_ids.numpy()])) == 5   # one image per class while classes last


def test_tasks_are_the_same_for_the_same_seed_and_differ_for_another():
    images = image_set()
    a, b, c = (C.make_tasks(images, 10, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.observed, b.observed) and torch.equal(a.image_ids, b.image_ids)
    assert not torch.equal(a.observed, c.observed)


@pytest.mark.parametrize("kwargs, message", [
    (dict(observed=0.0), "observed=0.0 is not valid"),
    (dict(observed=1.0), "observed=1.0 is not valid"),
    (dict(num_tasks=0), "num_tasks=0 is not valid"),
])
def test_make_tasks_rejects_bad_parameters_naming_them(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        C.make_tasks(image_set(), **{"num_tasks": 3, **kwargs})


def test_make_tasks_refuses_colour_images():
    with pytest.raises(DataError, match="need gray images .* found 3 channels"):
        C.make_tasks(image_set(channels=3), 2)


def random_problem(pixels: int, observed: int, features: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    design = torch.randn(pixels, features, generator=g, dtype=F64) / features ** 0.5
    image = torch.rand(pixels, generator=g, dtype=F64)
    theta0 = torch.randn(features + 1, generator=g, dtype=F64)
    return design, image, theta0, torch.randperm(pixels, generator=g)[:observed]


def test_library_inner_loop_equals_the_textbook_closed_form_of_k_step_gradient_descent():
    design, image, theta0, o = random_problem(pixels=60, observed=40, features=8)
    A, c = C.normal_equations(design[o], image[o])
    assert torch.linalg.cond(A) < 100                                # θ* = A⁻¹c is unique and well defined
    theta_star = torch.linalg.solve(A, c)
    model = C.make_model(8, F64)
    for lr, k in ((0.3, 1), (0.3, 4), (0.1, 10)):
        adapted = inner_loop(model, C.as_params(theta0), design[o], image[o][:, None], F.mse_loss, steps=k, lr=lr,
                             create_graph=False)
        textbook = theta_star + torch.linalg.matrix_power(torch.eye(9, dtype=F64) - lr * A, k) @ (theta0 - theta_star)
        torch.testing.assert_close(C.as_vector(adapted), textbook, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(C.gd_closed_form(design[o], image[o], theta0, lr, k), textbook,
                                   rtol=1e-10, atol=1e-12)


def test_closed_form_stays_exact_with_fewer_observed_pixels_than_parameters():
    design, image, theta0, o = random_problem(pixels=64, observed=12, features=30, seed=1)
    assert torch.linalg.matrix_rank(C.normal_equations(design[o], image[o])[0]) == 12   # A is singular
    tasks = C.CompletionTasks(image[None], o[None], torch.tensor([[i for i in range(64) if i not in o]]),
                              torch.tensor([0]), 8, 8)
    completions = C.complete_by_gd(design, tasks, theta0, lr=0.5, ks=(0, 3, 7))
    for row, k in zip(completions[:, 0], (0, 3, 7)):
        expected = C.with_bias(design) @ C.gd_closed_form(design[o], image[o], theta0, 0.5, k)
        torch.testing.assert_close(row, expected, rtol=1e-10, atol=1e-12)


def test_fit_image_reproduces_an_image_the_features_can_represent():
    design, _, theta, _ = random_problem(pixels=64, observed=1, features=20, seed=2)
    image = C.with_bias(design) @ theta
    torch.testing.assert_close(C.with_bias(design) @ C.fit_image(design, image, ridge=1e-12), image,
                               rtol=0, atol=1e-8)


def test_gaussian_conditional_recovers_a_low_rank_image_from_enough_pixels():
    draws = low_rank_images(520, rank=3, seed=0)        # one Gaussian: the same μ and L, a new z per image
    prior = C.fit_gaussian(image_set(images=draws[:500], per_class=5), noise=1e-10)
    tasks = C.make_tasks(image_set(images=draws[500:], per_class=5), 4, observed=0.1, seed=0)  # 6 pixels ≥ rank
    torch.testing.assert_close(C.conditional_mean(prior, tasks), tasks.pixels, rtol=0, atol=1e-4)
    too_few = C.make_tasks(image_set(images=draws[500:], per_class=5), 4, observed=2 / 64, seed=0)
    assert (C.conditional_mean(prior, too_few) - too_few.pixels).abs().max() > 1e-2   # 2 pixels < rank 3


def test_gaussian_conditional_beats_the_mean_image_on_noisy_low_rank_data():
    train = image_set(images=low_rank_images(400, rank=5, noise=0.05, seed=3), per_class=4)
    test = image_set(images=low_rank_images(440, rank=5, noise=0.05, seed=3)[400:], per_class=4)
    prior = C.fit_gaussian(train, noise=0.05 ** 2)
    tasks = C.make_tasks(test, 40, observed=0.25, seed=0)
    conditional = C.psnr_unobserved(C.conditional_mean(prior, tasks), tasks)
    mean_only = C.psnr_unobserved(prior.mean.expand(40, -1), tasks)
    assert (conditional - mean_only).mean() > 3.0


def test_ridge_prior_gives_the_primal_ridge_regression_completion():
    design, image, theta_prior, o = random_problem(pixels=64, observed=20, features=30, seed=4)
    ridge = 0.3
    X = C.with_bias(design)
    gram = X[o].T @ X[o] + ridge * torch.eye(31, dtype=F64)
    theta = theta_prior + torch.linalg.solve(gram, X[o].T @ (image[o] - X[o] @ theta_prior))
    tasks = C.CompletionTasks(image[None], o[None], o[None], torch.tensor([0]), 8, 8)
    torch.testing.assert_close(C.conditional_mean(C.ridge_prior(design, theta_prior, ridge), tasks)[0], X @ theta,
                               rtol=1e-9, atol=1e-10)


def synthetic_meta_problem(count: int = 200):
    """Images whose θ varies around a shared θ̄ (so the mean image is representable), ``[count, 1, 8, 8]``."""
    features = C.fourier_design(8, 8, num_features=8, scale=1.0)
    g = torch.Generator().manual_seed(5)
    theta_mean = 0.3 * torch.randn(17, generator=g, dtype=F64)
    thetas = theta_mean + 0.05 * torch.randn(count, 17, generator=g, dtype=F64)
    images = (thetas @ C.with_bias(features).T).reshape(count, 1, 8, 8).numpy()
    return features, image_set(images=images, per_class=4)


def test_maml_lowers_the_meta_loss_and_learns_what_the_mean_image_init_knows():
    features, images = synthetic_meta_problem()
    cfg = MetaConfig("maml", inner_steps=2, inner_lr=0.2)
    theta, losses = C.train_maml(features, images, cfg, steps=60, meta_batch_size=8, outer_lr=0.05, progress=False)
    assert losses[-10:].mean() < 0.1 * losses[:5].mean()
    tasks = C.make_tasks(images, 20, seed=9)
    def k_step_psnr(theta0):
        return C.psnr_unobserved(C.complete_by_gd(features, tasks, theta0, 0.2, ks=(2,)), tasks)[0]
    zero, maml = k_step_psnr(torch.zeros_like(theta)), k_step_psnr(theta)
    mean_init = k_step_psnr(C.fit_image(features, torch.as_tensor(images.images.mean(0), dtype=F64)))
    assert (maml - zero).mean() > 10.0
    assert abs((maml - mean_init).mean()) < 0.1 * (maml - zero).mean()


def test_train_maml_leaves_learned_inner_rates_to_notebook_03():
    features, images = synthetic_meta_problem()
    with pytest.raises(ConfigError, match="algorithm='metasgd'"):
        C.train_maml(features, images, MetaConfig("metasgd"), steps=1)


def evaluate_once(seed: int):
    features, images = synthetic_meta_problem()
    theta, _ = C.train_maml(features, images, MetaConfig("maml", inner_steps=2, inner_lr=0.2), steps=5,
                            meta_batch_size=4, seed=seed, progress=False)
    prior = C.fit_gaussian(images)
    tasks = C.make_tasks(images, 12, seed=seed)
    return C.evaluate_methods(features, tasks, {"zero": torch.zeros_like(theta), "maml": theta},
                              {"zero": 0.2, "maml": 0.2},
                              {"gaussian": prior, "ridge": C.ridge_prior(features, theta, 1.0)}, ks=(0, 1, 3),
                              progress=False)


def test_evaluation_is_identical_for_the_same_seed_and_shaped_per_method_and_k():
    first, second, other = evaluate_once(0), evaluate_once(0), evaluate_once(1)
    assert first.psnr.keys() == {"zero", "maml", "gaussian", "ridge"}
    assert first.psnr["maml"].shape == (3, 12) and first.psnr["gaussian"].shape == (12,)
    for name in first.psnr:
        np.testing.assert_array_equal(first.psnr[name], second.psnr[name])
    assert not np.array_equal(first.psnr["maml"], other.psnr["maml"])
    table = C.psnr_table(first, baseline="zero")
    assert "maml − zero" in table and "gaussian *" in table and table.count("±") == 3 * 5


def test_evaluate_methods_names_an_init_without_a_step_size():
    features, images = synthetic_meta_problem()
    with pytest.raises(ConfigError, match=r"no step size in lrs for \['maml'\]"):
        C.evaluate_methods(features, C.make_tasks(images, 2), {"maml": torch.zeros(17, dtype=F64)}, {})


def test_choose_takes_the_best_finite_score():
    best, scores = C.choose([0.1, 0.2, 0.4], lambda lr: {0.1: 10.0, 0.2: 12.0, 0.4: float("nan")}[lr])
    assert best == 0.2 and len(scores) == 3
    with pytest.raises(ConfigError, match="scored non-finite"):
        C.choose([1.0], lambda _: float("-inf"))


def test_three_splits_keeps_a_sets_own_splits():
    images = image_set(num_classes=6)
    images = ImageSet(images.images, images.labels, images.classes, images.alphabets,
                      ("background",) * 4 + ("validation", "evaluation"), name="split")
    background, validation, evaluation = C.three_splits(images)
    assert (background.classes, validation.classes, evaluation.classes) == (
        ("c0", "c1", "c2", "c3"), ("c4",), ("c5",))


def test_three_splits_carves_disjoint_classes_from_an_all_background_set_the_same_way_each_time():
    images = image_set(num_classes=20, per_class=2)
    parts = C.three_splits(images, seed=3)
    assert [p.num_classes for p in parts] == [14, 2, 4]
    assert len({c for p in parts for c in p.classes}) == 20
    assert [p.classes for p in C.three_splits(images, seed=3)] == [p.classes for p in parts]


def test_three_splits_needs_enough_classes_to_carve_from():
    with pytest.raises(DataError, match=r"synthetic: 2 classes, 1 of them left in the background .*holding out 1 "
                                        r"evaluation class\(es\) needs at least 2 there"):
        C.three_splits(image_set(num_classes=2))


def test_feature_space_prior_equals_the_pixel_gaussian_when_the_features_draw_every_image():
    """With as many independent features as pixels, the network can draw any image, so the bound for its
    update rules is the bound for any linear completion; with few features it is lower."""
    images = image_set(images=low_rank_images(300, size=6, rank=4, noise=0.02, seed=5), per_class=3)
    full = torch.as_tensor(np.random.default_rng(0).normal(size=(36, 35)))        # + bias = 36 = pixels
    prior = C.feature_space_prior(full, images, ridge=1e-12)
    pixel = C.fit_gaussian(images)
    torch.testing.assert_close(prior.mean, pixel.mean, rtol=0, atol=1e-8)
    torch.testing.assert_close(prior.cov, pixel.cov, rtol=0, atol=1e-7)
    few = C.feature_space_prior(full[:, :3], images)
    tasks = C.make_tasks(images, 30, observed=0.3, seed=1)
    assert (C.psnr_unobserved(C.conditional_mean(few, tasks), tasks).mean()
            < C.psnr_unobserved(C.conditional_mean(pixel, tasks), tasks).mean() - 1.0)
