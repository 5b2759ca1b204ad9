"""Tests of metagen_utils.completion.update_rules: each learned update rule against the generic inner loop,
its closed forms, training, and errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metagen_utils import completion

from metagen_utils.completion import update_rules

from metagen_utils.meta import maml as meta
from metagen_utils.data.images import ImageSet
from metagen_utils.errors import ConfigError, MetaLearningError


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    images = rng.random((40, 1, 8, 8)).astype(np.float32)
    data = ImageSet(images, np.repeat(np.arange(10), 4), tuple(f"c{i}" for i in range(10)), ("A",) * 10,
                    ("background",) * 10, name="noise")
    features = completion.fourier_design(8, 8, num_features=16, scale=2.0)
    tasks = completion.make_tasks(data, 6, observed=0.5, seed=0)
    return data, features, tasks


def support(features, tasks):
    design = completion.with_bias(features)
    return design[tasks.observed], tasks.pixels.gather(1, tasks.observed)


def test_scalar_rule_is_plain_gradient_descent_in_closed_form(setup):
    _, features, tasks = setup
    theta0 = torch.randn(33, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.1
    rule = update_rules.init_rule(theta0, "scalar", lr=0.05, steps=4)
    path = update_rules.adapt(rule, *support(features, tasks), steps=4)
    for t in range(len(tasks)):
        expected = completion.gd_closed_form(features[tasks.observed[t]], tasks.pixels[t, tasks.observed[t]],
                                             theta0, 0.05, 4)
        torch.testing.assert_close(path[4][t], expected)


def test_full_rule_at_initialisation_equals_the_scalar_rule(setup):
    _, features, tasks = setup
    theta0 = torch.zeros(33, dtype=torch.float64)
    scalar = update_rules.adapt(update_rules.init_rule(theta0, "scalar", 0.03, 3), *support(features, tasks), 3)
    full = update_rules.adapt(update_rules.init_rule(theta0, "full", 0.03, 3), *support(features, tasks), 3)
    torch.testing.assert_close(full[3], scalar[3])


def test_diagonal_rule_equals_the_librarys_meta_sgd_inner_loop(setup):
    _, features, tasks = setup
    rates = torch.rand(33, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 0.05
    theta0 = torch.randn(33, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 0.1
    rule = {"theta0": theta0, "sqrt_rate": rates.sqrt()[None]}
    path = update_rules.adapt(rule, *support(features, tasks), steps=2)
    model = completion.make_model(32)
    batch = completion.task_batch(features, tasks)
    for t in range(len(tasks)):
        adapted = meta.inner_loop(model, completion.as_params(theta0), batch.support_x[t], batch.support_y[t],
                                  F.mse_loss, steps=2, lr=completion.as_params(rates), create_graph=False)
        torch.testing.assert_close(completion.as_vector(adapted), path[2][t])


@pytest.mark.parametrize("kind", ["diagonal", "lowrank", "full"])
def test_learned_preconditioners_stay_positive_semidefinite(kind):
    rule = update_rules.init_rule(torch.zeros(10, dtype=torch.float64), kind, 0.1, 1, rank=3)
    with torch.no_grad():
        for value in rule.values():
            value.copy_(torch.randn(value.shape, dtype=value.dtype, generator=torch.Generator().manual_seed(4)))
    M = update_rules.precondition(rule, 0, torch.eye(10, dtype=torch.float64))
    torch.testing.assert_close(M, M.T)
    assert torch.linalg.eigvalsh(M).min() > -1e-10


def test_meta_training_lowers_the_meta_loss(setup):
    data, features, tasks = setup
    rule = update_rules.init_rule(torch.zeros(33), "diagonal", 0.01, 2)
    losses = update_rules.train_rule(features.float(), data, rule, steps=60, inner_steps=2, meta_batch_size=8,
                                  outer_lr=1e-2, observed=0.5, query_pixels=None, progress=False)
    assert losses[-10:].mean() < 0.8 * losses[:10].mean()


def test_a_diverging_update_is_an_error_naming_the_step(setup):
    data, features, _ = setup
    rule = update_rules.init_rule(torch.zeros(33), "scalar", 1e6, 3)
    with pytest.raises(MetaLearningError, match=r"meta-training step 0: the query loss is (inf|nan)"):
        update_rules.train_rule(features.float(), data, rule, steps=2, inner_steps=3, meta_batch_size=4,
                             observed=0.5, query_pixels=None, progress=False)


def spectral_radius_of_step(rule, features, tasks, step=0):
    """ρ(I − M A) per task on A's range: above 1, repeating the step diverges."""
    return [(1 - mu).abs().max().item() for mu in update_rules.step_eigenvalues(rule, features, tasks, step)]


def test_spectral_radius_separates_stable_from_unstable_step_sizes(setup):
    _, features, tasks = setup
    x = completion.with_bias(features)[tasks.observed[0]]
    lam_max = torch.linalg.eigvalsh((2.0 / len(x)) * x.T @ x)[-1].item()
    stable = update_rules.init_rule(torch.zeros(33, dtype=torch.float64), "scalar", 1.0 / lam_max, 1)
    unstable = update_rules.init_rule(torch.zeros(33, dtype=torch.float64), "scalar", 2.5 / lam_max, 1)
    assert spectral_radius_of_step(stable, features, tasks.select([0]))[0] < 1
    assert spectral_radius_of_step(unstable, features, tasks.select([0]))[0] > 1


def test_unknown_kind_and_bad_rate_are_refused_by_name():
    with pytest.raises(ConfigError, match="kind='cubic'"):
        update_rules.init_rule(torch.zeros(3), "cubic", 0.1, 1)
    with pytest.raises(ConfigError, match="lr=0"):
        update_rules.init_rule(torch.zeros(3), "scalar", 0, 1)


def test_exact_maml_init_is_the_least_squares_solution_of_the_affine_map():
    """k GD steps are affine in θ₀, θ_k = M θ₀ + b per task, so MAML's objective is a linear least-squares
    problem in θ₀: L-BFGS must land on its solution."""
    torch.manual_seed(0)
    p_features, n_obs, n_query, tasks_n, k, lr = 6, 5, 7, 4, 3, 0.2
    design = torch.randn(n_obs + n_query, p_features, dtype=torch.float64)
    pixels = torch.rand(tasks_n, n_obs + n_query, dtype=torch.float64)
    order = torch.stack([torch.randperm(n_obs + n_query) for _ in range(tasks_n)])
    observed = order[:, :n_obs]
    tasks = completion.CompletionTasks(pixels, observed, order[:, n_obs:], torch.arange(tasks_n), 3, 4)
    theta = update_rules.exact_maml_init(design, tasks, lr, k, ridge=0.0)
    rows, targets = [], []
    X = completion.with_bias(design)
    for t in range(tasks_n):
        o = observed[t]
        q = order[t, n_obs:]
        A, c = completion.normal_equations(design[o], pixels[t, o])
        M = torch.linalg.matrix_power(torch.eye(len(A), dtype=A.dtype) - lr * A, k)
        b = completion.gd_closed_form(design[o], pixels[t, o], torch.zeros(len(A), dtype=A.dtype), lr, k)
        rows.append(X[q] @ M)
        targets.append(pixels[t, q] - X[q] @ b)
    expected = torch.linalg.lstsq(torch.cat(rows), torch.cat(targets)[:, None]).solution[:, 0]
    torch.testing.assert_close(theta, expected, rtol=1e-6, atol=1e-8)
    # And the objective as the iterative loop computes it is stationary there, as L-BFGS on it finds.
    start = theta.clone().requires_grad_(True)
    rule = {"theta0": start, "sqrt_rate": torch.tensor([lr ** 0.5], dtype=torch.float64)}
    xs, ys, xq, yq = update_rules._support_and_query(design, tasks)
    loss = ((update_rules.predict(xq, update_rules.adapt(rule, xs, ys, k)[-1]) - yq) ** 2).mean()
    (grad,) = torch.autograd.grad(loss, start)
    assert grad.norm() < 1e-10
    search = torch.zeros_like(theta, requires_grad=True)
    lbfgs = torch.optim.LBFGS([search], max_iter=500, tolerance_grad=1e-13, tolerance_change=0,
                              line_search_fn="strong_wolfe")
    def closure():
        lbfgs.zero_grad()
        value = ((update_rules.predict(xq, update_rules.adapt({**rule, "theta0": search}, xs, ys, k)[-1]) - yq) ** 2).mean()
        value.backward()
        return value
    lbfgs.step(closure)
    torch.testing.assert_close(search.detach(), theta, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", update_rules.KINDS)
def test_step_eigenvalues_are_the_spectrum_of_m_a_for_every_kind_of_rule(setup, kind):
    _, features, tasks = setup
    rule = update_rules.init_rule(torch.zeros(33, dtype=torch.float64), kind, 0.05, 1, rank=3)
    with torch.no_grad():   # move every rule off plain gradient descent so that M is not a multiple of I
        for name, tensor in rule.items():
            if name != "theta0":
                tensor.add_(0.05 * torch.randn(tensor.shape, dtype=tensor.dtype, generator=torch.Generator().manual_seed(1)))
    x = completion.with_bias(features)[tasks.observed[0]]
    A = (2.0 / len(x)) * x.T @ x
    expected = torch.linalg.eigvals(update_rules.precondition({k: v.detach() for k, v in rule.items()}, 0, A))
    expected = expected[expected.abs() > 1e-8 * expected.abs().max()]
    got = update_rules.step_eigenvalues(rule, features, tasks.select([0]))[0]
    torch.testing.assert_close(torch.sort(got.real).values, torch.sort(expected.real).values, rtol=1e-7, atol=1e-9)
