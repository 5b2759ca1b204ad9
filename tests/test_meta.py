"""Tests of metagen_utils.meta: vmap vs loop, finite differences, closed forms, and every error."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metagen_utils.errors import ConfigError, DataError, MetaLearningError
from metagen_utils.meta.maml import (ALGORITHMS, MetaConfig, TaskBatch, init_meta_params, inner_loop, meta_gradient,
                                meta_loss, meta_step, params_of, select_adapted)
from metagen_utils.models import CoordMLP, FourierFeatures, LinearMetaNet

F64 = torch.float64


def linear_net() -> nn.Module:
    """f_θ(γ(p)) = W γ(p) + b: linear in θ, so MSE makes every inner loop a least-squares descent."""
    torch.manual_seed(0)
    return nn.Sequential(FourierFeatures(num_features=6, scale=1.0, seed=0), LinearMetaNet(12, 1)).to(F64)


def mlp(context_dim: int = 0) -> nn.Module:
    torch.manual_seed(1)
    return CoordMLP(2, hidden=8, depth=2, out_features=1, activation="silu", context_dim=context_dim).to(F64)


def task_batch(tasks: int = 3, k_shot: int = 5, n_query: int = 4, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    def coords(n):
        return torch.rand(tasks, n, 2, generator=g, dtype=F64) * 2 - 1
    def values(n):
        return torch.randn(tasks, n, 1, generator=g, dtype=F64)
    return TaskBatch(coords(k_shot), values(k_shot), coords(n_query), values(n_query))


MODELS = {"linear": linear_net, "mlp": mlp, "mlp_context": lambda: mlp(context_dim=3)}
VARIANTS = {
    "plain": dict(inner_steps=2),
    "per_step_lr_multi_step_loss": dict(inner_steps=3, per_step_lr=True, multi_step_loss=True),
    "adapt_subset": dict(inner_steps=2),
}
SUBSETS = {"linear": ("1.bias",), "mlp": ("net.4",), "mlp_context": ("context",)}


def config_for(model: str, algorithm: str, variant: str) -> MetaConfig:
    adapt = SUBSETS[model] if variant == "adapt_subset" else "all"
    return MetaConfig(algorithm, inner_lr=0.3, adapt=adapt, **VARIANTS[variant])


CASES = [(m, a, v) for m in MODELS for a in ALGORITHMS for v in VARIANTS
         if not (a == "reptile" and v == "per_step_lr_multi_step_loss")
         and not (m == "mlp_context" and v != "adapt_subset")]


@pytest.mark.parametrize("model,algorithm,variant", CASES)
def test_vmapped_and_looped_meta_gradients_agree(model, algorithm, variant):
    module, cfg, batch = MODELS[model](), config_for(model, algorithm, variant), task_batch()
    meta_params = init_meta_params(module, cfg)
    loss_v, grads_v = meta_gradient(module, meta_params, batch, cfg, F.mse_loss, vectorised=True)
    loss_l, grads_l = meta_gradient(module, meta_params, batch, cfg, F.mse_loss, vectorised=False)
    torch.testing.assert_close(loss_v, loss_l, rtol=1e-12, atol=1e-14)
    assert grads_v.keys() == grads_l.keys() == meta_params.keys()
    for name in grads_v:
        torch.testing.assert_close(grads_v[name], grads_l[name], rtol=1e-10, atol=1e-13, msg=name)
    adapted = select_adapted(list(params_of(module)), cfg.adapt)
    moved = [n for n in adapted if grads_v[n].abs().sum() > 0]
    assert moved == list(adapted), "every adapted parameter gets a meta-gradient"


def flat_meta_gradient_by_finite_differences(module, meta_params, batch, cfg, eps=1e-5):
    def loss():
        with torch.no_grad():
            return meta_loss(module, meta_params, batch, cfg, F.mse_loss, vectorised=False).item()
    estimates = []
    for t in meta_params.values():
        flat = t.data.view(-1)
        for i in range(flat.numel()):
            original = flat[i].item()
            flat[i] = original + eps
            up = loss()
            flat[i] = original - eps
            down = loss()
            flat[i] = original
            estimates.append((up - down) / (2 * eps))
    return torch.tensor(estimates, dtype=F64)


@pytest.mark.parametrize("model,cfg", [
    ("linear", MetaConfig("maml", inner_steps=2, inner_lr=0.3)),
    ("mlp", MetaConfig("maml", inner_steps=2, inner_lr=0.3, multi_step_loss=True)),
    ("mlp", MetaConfig("metasgd", inner_steps=2, inner_lr=0.3, per_step_lr=True)),
])
def test_second_order_meta_gradient_equals_central_finite_differences(model, cfg):
    module, batch = MODELS[model](), task_batch(tasks=2)
    meta_params = init_meta_params(module, cfg)
    _, grads = meta_gradient(module, meta_params, batch, cfg, F.mse_loss, vectorised=True)
    analytic = torch.cat([grads[n].reshape(-1) for n in meta_params])
    numeric = flat_meta_gradient_by_finite_differences(module, meta_params, batch, cfg)
    assert ((analytic - numeric).norm() / numeric.norm()).item() <= 1e-6


def least_squares_closed_forms(module, batch, inner_lr, steps):
    """Per task, with X = [γ(x), 1] and θ = [w; b]: L(θ) = |Xθ − y|²/k, ∇L = Aθ − c with A = 2XᵀX/k,
    c = 2Xᵀy/k. K steps of gradient descent from θ₀: θ_K = M^K θ₀ + Σ_{j<K} M^j α c, M = I − αA, so
    dθ_K/dθ₀ = M^K. Returns θ₀ and, per task, θ_K, ∇L_query(θ_K) and M^K."""
    features, linear = module[0], module[1]
    theta0 = torch.cat([linear.weight.detach().reshape(-1), linear.bias.detach()])
    identity = torch.eye(len(theta0), dtype=F64)
    def normal_equations(x, y):
        design = torch.cat([features(x), torch.ones(len(x), 1, dtype=F64)], dim=1)
        return 2 * design.T @ design / len(x), 2 * design.T @ y[:, 0] / len(x)
    results = []
    for sx, sy, qx, qy in zip(*batch):
        a, c = normal_equations(sx, sy)
        m = identity - inner_lr * a
        theta_k = torch.linalg.matrix_power(m, steps) @ theta0 + sum(
            torch.linalg.matrix_power(m, j) @ (inner_lr * c) for j in range(steps))
        a_q, c_q = normal_equations(qx, qy)
        results.append((theta_k, a_q @ theta_k - c_q, torch.linalg.matrix_power(m, steps)))
    return theta0, results


def as_flat(grads):
    return torch.cat([grads["1.weight"].reshape(-1), grads["1.bias"]])


@pytest.mark.parametrize("vectorised", [True, False])
@pytest.mark.parametrize("algorithm", ["maml", "fomaml", "reptile"])
def test_meta_gradient_equals_least_squares_closed_form_on_the_linear_network(algorithm, vectorised):
    module, batch, steps, lr = linear_net(), task_batch(tasks=3), 3, 0.2
    cfg = MetaConfig(algorithm, inner_steps=steps, inner_lr=lr)
    _, grads = meta_gradient(module, init_meta_params(module, cfg), batch, cfg, F.mse_loss, vectorised)
    theta0, per_task = least_squares_closed_forms(module, batch, lr, steps)
    expected = {
        "fomaml": lambda theta_k, query_grad, jac: query_grad,
        "maml": lambda theta_k, query_grad, jac: jac.T @ query_grad,
        "reptile": lambda theta_k, query_grad, jac: theta0 - theta_k,
    }[algorithm]
    closed_form = torch.stack([expected(*r) for r in per_task]).mean(0)
    torch.testing.assert_close(as_flat(grads), closed_form, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("vectorised", [True, False])
def test_first_order_meta_gradient_equals_the_textbook_loop_with_shared_weights_and_learned_rates(vectorised):
    """The kit descends on detached weights at first order and rebuilds the path from θ; the textbook
    form keeps every inner step in the graph and detaches the gradients. Same math, so the same numbers:
    the adapted context's and the shared weights' gradients, and the per-step rates'."""
    module, batch = mlp(context_dim=3), task_batch(tasks=3)
    cfg = MetaConfig("fomaml", inner_steps=3, inner_lr=0.3, per_step_lr=True, multi_step_loss=True,
                     adapt=("context",))
    meta_params = init_meta_params(module, cfg)
    _, grads = meta_gradient(module, meta_params, batch, cfg, F.mse_loss, vectorised)
    learned = {n: t.detach().clone().requires_grad_() for n, t in meta_params.items()}
    weights = {n: t for n, t in learned.items() if not n.startswith("inner_lr.")}
    total = 0
    for support_x, support_y, query_x, query_y in zip(*batch):
        context, query_losses = weights["context"], []
        for step in range(cfg.inner_steps):
            loss = F.mse_loss(torch.func.functional_call(module, {**weights, "context": context}, (support_x,)),
                              support_y)
            (g,) = torch.autograd.grad(loss, [context])
            context = context - learned["inner_lr.context"][step] * g.detach()
            query_losses.append(F.mse_loss(torch.func.functional_call(module, {**weights, "context": context},
                                                                      (query_x,)), query_y))
        total = total + torch.stack(query_losses).mean() / len(batch.support_x)
    expected = torch.autograd.grad(total, list(learned.values()), allow_unused=True)
    for (name, t), e in zip(learned.items(), expected):
        torch.testing.assert_close(grads[name], torch.zeros_like(t) if e is None else e, rtol=1e-10, atol=1e-13,
                                   msg=name)
    assert grads["inner_lr.context"].abs().sum() > 0 and grads["net.0.weight"].abs().sum() > 0


def test_meta_gradients_still_match_closed_form_and_loop_after_set_num_threads_2():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        test_meta_gradient_equals_least_squares_closed_form_on_the_linear_network("maml", True)
        test_vmapped_and_looped_meta_gradients_agree("mlp", "metasgd", "per_step_lr_multi_step_loss")
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_duplicating_the_task_batch_leaves_the_meta_gradient_unchanged(algorithm):
    module, batch = mlp(), task_batch(tasks=2)
    cfg = MetaConfig(algorithm, inner_steps=2, inner_lr=0.3)
    meta_params = init_meta_params(module, cfg)
    doubled = TaskBatch(*(torch.cat([t, t]) for t in batch))
    loss, grads = meta_gradient(module, meta_params, batch, cfg, F.mse_loss)
    loss2, grads2 = meta_gradient(module, meta_params, doubled, cfg, F.mse_loss)
    torch.testing.assert_close(loss2, loss, rtol=1e-12, atol=0)
    for name in grads:
        torch.testing.assert_close(grads2[name], grads[name], rtol=1e-10, atol=1e-14, msg=name)


def test_multi_step_loss_is_the_mean_query_loss_after_each_inner_step():
    module, batch = mlp(), task_batch(tasks=2)
    cfg = MetaConfig("maml", inner_steps=3, inner_lr=0.3, multi_step_loss=True)
    params = params_of(module)
    expected = torch.stack([
        torch.stack([F.mse_loss(torch.func.functional_call(module, inner_loop(
            module, params, sx, sy, F.mse_loss, steps=s, lr=0.3), (qx,)), qy) for s in (1, 2, 3)]).mean()
        for sx, sy, qx, qy in zip(*batch)]).mean()
    torch.testing.assert_close(meta_loss(module, params, batch, cfg, F.mse_loss), expected)


def test_inner_loop_applies_meta_sgd_rates_elementwise_and_leaves_shared_params_untouched():
    module, batch = linear_net(), task_batch(tasks=1)
    params = params_of(module)
    rates = {"1.weight": torch.linspace(0.1, 0.5, 12, dtype=F64).reshape(1, 12)}
    adapted = inner_loop(module, params, batch.support_x[0], batch.support_y[0], F.mse_loss, steps=1,
                         lr=rates, adapt=("1.weight",))
    grad = torch.autograd.grad(F.mse_loss(module(batch.support_x[0]), batch.support_y[0]), params["1.weight"])[0]
    torch.testing.assert_close(adapted["1.weight"], params["1.weight"] - rates["1.weight"] * grad)
    assert adapted["1.bias"] is params["1.bias"]


def test_init_meta_params_shares_the_module_tensors_and_shapes_the_learned_rates():
    module = mlp()
    meta_params = init_meta_params(module, MetaConfig("metasgd", inner_steps=3, per_step_lr=True, inner_lr=0.05))
    assert meta_params["net.0.weight"] is module.net[0].weight
    assert meta_params["inner_lr.net.0.weight"].shape == (3, 8, 2)
    assert torch.all(meta_params["inner_lr.net.0.weight"] == 0.05)
    lslr = init_meta_params(module, MetaConfig("maml", inner_steps=3, per_step_lr=True, adapt=("net.4",)))
    assert sorted(n for n in lslr if n.startswith("inner_lr.")) == ["inner_lr.net.4.bias", "inner_lr.net.4.weight"]
    assert lslr["inner_lr.net.4.weight"].shape == (3,)


def test_meta_step_moves_the_module_and_lowers_the_meta_loss():
    module, batch = linear_net(), task_batch(tasks=4)
    cfg = MetaConfig("maml", inner_steps=2, inner_lr=0.2)
    meta_params = init_meta_params(module, cfg)
    optimizer = torch.optim.Adam(meta_params.values(), lr=0.05)
    losses = [meta_step(module, meta_params, optimizer, batch, cfg, F.mse_loss) for _ in range(30)]
    assert losses[-1] < 0.8 * losses[0]
    assert not torch.equal(module[1].weight, linear_net()[1].weight)


def test_meta_step_clips_the_global_gradient_norm():
    module, batch = mlp(), task_batch()
    cfg = MetaConfig("metasgd", inner_steps=1)
    meta_params = init_meta_params(module, cfg)
    _, grads = meta_gradient(module, meta_params, batch, cfg, F.mse_loss)
    assert torch.cat([g.reshape(-1) for g in grads.values()]).norm() > 0.1
    before = [t.detach().clone() for t in meta_params.values()]
    meta_step(module, meta_params, torch.optim.SGD(meta_params.values(), lr=1.0), batch, cfg, F.mse_loss,
              max_grad_norm=1e-3)
    moved = torch.cat([(t.detach() - b).reshape(-1) for t, b in zip(meta_params.values(), before)])
    assert moved.norm().item() == pytest.approx(1e-3, rel=1e-4)   # clip_grad_norm_ adds 1e-6 to the norm


def test_reptile_step_with_unit_rate_moves_parameters_to_the_mean_adapted_parameters():
    module, batch = linear_net(), task_batch(tasks=3)
    cfg = MetaConfig("reptile", inner_steps=2, inner_lr=0.2)
    meta_params = init_meta_params(module, cfg)
    theta0, per_task = least_squares_closed_forms(module, batch, 0.2, 2)
    meta_step(module, meta_params, torch.optim.SGD(meta_params.values(), lr=1.0), batch, cfg, F.mse_loss)
    torch.testing.assert_close(as_flat(params_of(module)).detach(), torch.stack([r[0] for r in per_task]).mean(0))


@pytest.mark.parametrize("vectorised", [True, False])
def test_nan_in_a_support_set_raises_naming_the_task_and_inner_step(vectorised):
    module, batch = linear_net(), task_batch(tasks=4)
    batch.support_y[2, 1] = float("nan")
    cfg = MetaConfig("maml", inner_steps=3)
    with pytest.raises(MetaLearningError, match=r"support loss of task 2 is nan at inner step 1 of 3"):
        meta_gradient(module, init_meta_params(module, cfg), batch, cfg, F.mse_loss, vectorised)


@pytest.mark.parametrize("vectorised", [True, False])
def test_a_diverging_inner_loop_raises_naming_the_first_non_finite_step(vectorised):
    module, batch = linear_net(), task_batch(tasks=2)
    cfg = MetaConfig("fomaml", inner_steps=6, inner_lr=1e120)
    with pytest.raises(MetaLearningError, match=r"support loss of task 0 is inf at inner step 3 of 6"):
        meta_gradient(module, init_meta_params(module, cfg), batch, cfg, F.mse_loss, vectorised)


def test_nan_in_a_query_set_raises_naming_the_task_and_step():
    module, batch = linear_net(), task_batch(tasks=3)
    batch.query_y[1, 0] = float("nan")
    cfg = MetaConfig("maml", inner_steps=2)
    with pytest.raises(MetaLearningError, match=r"query loss of task 1 is nan after inner step 2 of 2"):
        meta_loss(module, params_of(module), batch, cfg, F.mse_loss)


def batchnorm_net(track_running_stats: bool) -> nn.Module:
    return nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8, track_running_stats=track_running_stats),
                         nn.ReLU(), nn.Linear(8, 1)).to(F64)


def test_vectorised_path_rejects_batchnorm_with_running_stats_and_says_what_to_use():
    module, cfg = batchnorm_net(track_running_stats=True), MetaConfig("maml")
    with pytest.raises(MetaLearningError, match=r"BatchNorm1d at '1' tracks running statistics.*GroupNorm or "
                                                r"LayerNorm, or track_running_stats=False.*vectorised=False"):
        meta_gradient(module, params_of(module), task_batch(), cfg, F.mse_loss, vectorised=True)
    loss, _ = meta_gradient(module, params_of(module), task_batch(), cfg, F.mse_loss, vectorised=False)
    assert torch.isfinite(loss)
    stateless = batchnorm_net(track_running_stats=False)
    assert torch.isfinite(meta_gradient(stateless, params_of(stateless), task_batch(), cfg, F.mse_loss)[0])


def test_vectorised_path_turns_a_vmap_failure_into_an_error_that_suggests_the_loop():
    module = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.Linear(8, 1)).to(F64)
    with pytest.raises(MetaLearningError, match=r"random operation.*pass vectorised=False"):
        meta_gradient(module, params_of(module), task_batch(), MetaConfig("maml"), F.mse_loss)


@pytest.mark.parametrize("kwargs,message", [
    (dict(algorithm="protonet"), r"algorithm='protonet' is not valid"),
    (dict(inner_steps=0), r"inner_steps=0 is not valid"),
    (dict(inner_lr=float("nan")), r"inner_lr=nan is not valid"),
    (dict(adapt="context"), r"adapt='context' is not valid.*\('context',\)"),
    (dict(algorithm="reptile", per_step_lr=True), r"algorithm='reptile' has no outer loss"),
])
def test_meta_config_rejects_bad_values_naming_them(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MetaConfig(**kwargs)


def test_adapt_prefix_that_matches_no_parameter_is_an_error_listing_the_parameters():
    with pytest.raises(ConfigError, match=r"adapt: 'net.9' matches no parameter; the parameters are \['net.0"):
        init_meta_params(mlp(), MetaConfig("metasgd", adapt=("net.9",)))
    assert select_adapted(["net.2.weight", "net.20.weight"], ("net.2",)) == ("net.2.weight",)


def test_meta_params_without_the_learned_rates_the_config_needs_are_rejected():
    module = mlp()
    with pytest.raises(ConfigError, match=r"meta_params\['inner_lr.net.0.weight'\]: found nothing.*init_meta_params"):
        meta_loss(module, params_of(module), task_batch(), MetaConfig("metasgd"), F.mse_loss)


def test_meta_loss_refuses_reptile_which_has_no_outer_loss():
    module = mlp()
    with pytest.raises(ConfigError, match=r"reptile.*use meta_gradient"):
        meta_loss(module, params_of(module), task_batch(), MetaConfig("reptile"), F.mse_loss)


def test_task_batch_with_mismatched_shapes_is_rejected_naming_them():
    module, batch = mlp(), task_batch()
    with pytest.raises(DataError, match=r"support_x has 5 examples per task but support_y has 4"):
        meta_loss(module, params_of(module), batch._replace(support_y=batch.support_y[:, :4]), MetaConfig(),
                  F.mse_loss)
    with pytest.raises(DataError, match=r"same number of tasks"):
        meta_loss(module, params_of(module), batch._replace(query_x=batch.query_x[:2]), MetaConfig(), F.mse_loss)


def test_inner_loop_rejects_a_per_step_rate_list_of_the_wrong_length():
    module, batch = mlp(), task_batch(tasks=1)
    with pytest.raises(ConfigError, match=r"2 per-step rates given for steps=3"):
        inner_loop(module, params_of(module), batch.support_x[0], batch.support_y[0], F.mse_loss, steps=3,
                   lr=[0.1, 0.2])


def test_inner_loop_adapts_detached_parameters_alike_at_first_and_second_order():
    module, batch = linear_net(), task_batch(tasks=1)
    detached = {n: t.detach() for n, t in params_of(module).items()}
    second = inner_loop(module, detached, batch.support_x[0], batch.support_y[0], F.mse_loss, steps=3, lr=0.2)
    first = inner_loop(module, detached, batch.support_x[0], batch.support_y[0], F.mse_loss, steps=3, lr=0.2,
                       create_graph=False)
    for name in detached:
        assert torch.equal(first[name], second[name]) and not torch.equal(first[name], detached[name])


def test_a_parameter_the_module_freezes_stays_frozen_unless_a_prefix_names_it():
    module = linear_net()
    first = next(iter(params_of(module)))
    module.get_parameter(first).requires_grad_(False)
    batch = task_batch(tasks=1)
    adapted = inner_loop(module, params_of(module), batch[0][0], batch[1][0], F.mse_loss, steps=1, lr=0.5)
    assert torch.equal(adapted[first], module.get_parameter(first))          # frozen: not adapted
    others = [n for n in adapted if n != first]
    assert others and all(not torch.equal(adapted[n], module.get_parameter(n)) for n in others)
    named = inner_loop(module, params_of(module), batch[0][0], batch[1][0], F.mse_loss, steps=1, lr=0.5,
                       adapt=(first,))
    assert not torch.equal(named[first], module.get_parameter(first))        # named: adapted


def test_an_optimizer_that_misses_the_learned_rates_is_refused_naming_them():
    module, cfg = linear_net(), MetaConfig("metasgd", inner_lr=0.1)
    meta_params = init_meta_params(module, cfg)
    wrong = torch.optim.SGD(module.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match=r"the optimizer does not hold meta_params \['inner_lr\."):
        meta_step(module, meta_params, wrong, task_batch(), cfg, F.mse_loss)
    right = torch.optim.SGD(meta_params.values(), lr=0.1)
    assert math.isfinite(meta_step(module, meta_params, right, task_batch(), cfg, F.mse_loss))


def test_ragged_tasks_given_as_lists_are_a_data_error_saying_what_is_expected():
    module, cfg = linear_net(), MetaConfig()
    support_x, support_y, query_x, query_y = task_batch()
    with pytest.raises(DataError, match=r"support_x is a list, expected a tensor \[tasks, examples"):
        meta_loss(module, init_meta_params(module, cfg), (list(support_x), support_y, query_x, query_y), cfg,
                  F.mse_loss)


class TwoInputs(nn.Module):
    """A forward that takes two arguments, as a conditional model does: y = W x + U c + b."""

    def __init__(self) -> None:
        super().__init__()
        self.x, self.c = nn.Linear(3, 1), nn.Linear(2, 1, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.x(x) + self.c(c)


def test_inner_loop_takes_a_model_s_several_call_arguments_as_a_tuple_and_runs_under_vmap():
    torch.manual_seed(0)
    module = TwoInputs()
    x, c, y = torch.randn(4, 5, 3), torch.randn(4, 5, 2), torch.randn(4, 5, 1)
    def one(xi, ci, yi):
        return inner_loop(module, params_of(module), (xi, ci), yi, F.mse_loss, steps=2, lr=0.3)
    batched = torch.func.vmap(one)(x, c, y)
    for task in range(4):
        single = inner_loop(module, params_of(module), (x[task], c[task]), y[task], F.mse_loss, steps=2, lr=0.3)
        for name, value in single.items():
            torch.testing.assert_close(batched[name][task], value, rtol=1e-6, atol=1e-7)
    assert not torch.equal(single["c.weight"], module.c.weight)     # the second argument's weights adapted


def test_inner_loop_with_adam_takes_torch_optim_adam_s_steps_and_fresh_inputs_each_step():
    torch.manual_seed(0)
    module = linear_net()       # float64, on 2-d coordinates
    start = {n: t.detach().clone() for n, t in params_of(module).items()}
    xs, y = torch.randn(4, 6, 2, dtype=F64), torch.randn(6, 1, dtype=F64)
    adapted = inner_loop(module, start, lambda step: xs[step], y, F.mse_loss, steps=4, lr=0.05, optimizer="adam")
    reference = {n: t.clone().requires_grad_() for n, t in start.items()}
    optimizer = torch.optim.Adam(reference.values(), lr=0.05)
    for step in range(4):
        optimizer.zero_grad()
        F.mse_loss(torch.func.functional_call(module, reference, (xs[step],)), y).backward()
        optimizer.step()
    for name in start:
        assert not torch.equal(adapted[name], start[name])
        torch.testing.assert_close(adapted[name], reference[name].detach(), rtol=1e-12, atol=1e-14)
    with pytest.raises(ConfigError, match=r"optimizer='rmsprop' is not valid; expected 'sgd' or 'adam'"):
        inner_loop(module, start, xs[0], y, F.mse_loss, optimizer="rmsprop")


def test_meta_gradient_takes_several_call_arguments_per_task_alike_vmapped_and_looped():
    torch.manual_seed(0)
    module = TwoInputs().double()
    def inputs(examples):
        return (torch.randn(3, examples, 3, dtype=F64), torch.randn(3, examples, 2, dtype=F64))
    batch = TaskBatch(inputs(4), torch.randn(3, 4, 1, dtype=F64), inputs(5), torch.randn(3, 5, 1, dtype=F64))
    cfg = MetaConfig(inner_steps=2, inner_lr=0.1)
    loss_v, grads_v = meta_gradient(module, params_of(module), batch, cfg, F.mse_loss, vectorised=True)
    loss_l, grads_l = meta_gradient(module, params_of(module), batch, cfg, F.mse_loss, vectorised=False)
    torch.testing.assert_close(loss_v, loss_l, rtol=1e-12, atol=0)
    for name in grads_l:
        torch.testing.assert_close(grads_v[name], grads_l[name], rtol=1e-10, atol=1e-12)
    assert grads_l["c.weight"].abs().sum() > 0
    ragged = batch._replace(support_x=(batch.support_x[0], batch.support_x[1][:, :3]))
    with pytest.raises(DataError, match=r"the tensors of support_x differ in \[tasks, examples\]"):
        meta_gradient(module, params_of(module), ragged, cfg, F.mse_loss)
