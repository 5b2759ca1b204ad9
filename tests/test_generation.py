"""Tests of metagen_utils.generation: the likelihood bounds against exact quadrature, the prior map, the
inner loop on the context, vmap against loop, the baselines, and seeded determinism."""
import math

import pytest
import torch
import torch.nn.functional as F

from metagen_utils.generation import vae as gen
from metagen_utils.errors import ConfigError, DataError
from metagen_utils.meta.maml import MetaConfig, init_meta_params, inner_loop, inner_rates, meta_gradient, params_of
from metagen_utils.models import LinearMetaNet
from metagen_utils.data.episodes import EpisodeSampler

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def vae(latent_dim: int = 4, context_dim: int = 4, width: int = 4, seed: int = 0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = gen.ConditionalVAE(latent_dim, context_dim, width).to(dtype)
    with torch.no_grad():   # a non-trivial context map and FiLM, as after meta-training
        model.decoder.film.weight.normal_(0, 0.1)
        model.prior.weight.add_(torch.randn_like(model.prior.weight) * 0.1)
    return model


def glyphs(glyph_set, tasks: int, k_shot: int, n_query: int = 2, dtype=torch.float32, seed: int = 0):
    episode = EpisodeSampler(glyph_set.split("background"), k_shot, n_query, seed=seed).sample(tasks)
    return episode.support.to(dtype), episode.query.to(dtype)


def bernoulli_nll(logits, images):
    """−log p(x | logits) in nats per image, Bernoulli on [0, 1] pixels: ``[..., C, H, W]`` → ``[...]``."""
    logits, images = torch.broadcast_tensors(logits, images)
    return F.binary_cross_entropy_with_logits(logits, images, reduction="none").sum((-3, -2, -1))


def test_bernoulli_nll_of_known_cases():
    images = (torch.rand(2, 1, 28, 28) > 0.5).float()
    torch.testing.assert_close(bernoulli_nll(torch.zeros(2, 1, 28, 28), images),
                               torch.full((2,), 784 * math.log(2)))
    # One inked pixel predicted with p = σ(2): −log σ(2) = log(1 + e⁻²); blank pixels at p = σ(−30) ≈ 0.
    logits, image = torch.full((1, 28, 28), -30.0), torch.zeros(1, 28, 28)
    logits[0, 3, 4], image[0, 3, 4] = 2.0, 1.0
    expected = math.log1p(math.exp(-2.0)) + 783 * math.log1p(math.exp(-30.0))
    assert bernoulli_nll(logits, image).item() == pytest.approx(expected, rel=1e-6)


def test_prior_map_is_literally_w_c_plus_b_and_standard_normal_at_zero_context():
    model = vae(latent_dim=3, context_dim=5)
    assert isinstance(model.prior, LinearMetaNet)
    mean, logvar = model.prior_params()
    assert torch.equal(mean, torch.zeros(3)) and torch.equal(logvar, torch.zeros(3))
    with torch.no_grad():
        model.context.copy_(torch.randn(5))
        model.prior.bias.copy_(torch.randn(6))
    mean, logvar = model.prior_params()
    expected = model.prior.weight @ model.context + model.prior.bias
    torch.testing.assert_close(torch.cat([mean, logvar]), expected)


def test_nelbo_is_the_reconstruction_term_plus_the_analytic_kl(glyph_set):
    model = vae(dtype=F64)
    with torch.no_grad():
        model.context.copy_(torch.randn(4, dtype=F64))
    images = glyphs(glyph_set, 1, 3, dtype=F64)[0][0]
    noise = torch.randn(3, 2, 4, dtype=F64)
    mu, logvar = model.posterior(images).chunk(2, dim=-1)
    prior_mean, prior_logvar = model.prior_params()
    z = mu[:, None] + (0.5 * logvar).exp()[:, None] * noise
    logits = model.decoder(z.flatten(0, 1), model.context).view(3, 2, 1, 28, 28)
    reconstruction = bernoulli_nll(logits, images[:, None]).mean(1)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(prior_mean, (0.5 * prior_logvar).exp())
    kl = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(model(images, noise), reconstruction + kl)


def log_joint_on_a_grid(model, image):
    """log p(x, z | c) on a fine grid of a one-dimensional z: (grid ``[G]``, values ``[G]``)."""
    prior_mean, prior_logvar = model.prior_params()
    std = (0.5 * prior_logvar).exp()
    z = torch.linspace(-10, 10, 4001, dtype=F64)[:, None] * std + prior_mean
    log_joint = (-bernoulli_nll(model.decoder(z, model.context), image)
                 + torch.distributions.Normal(prior_mean, std).log_prob(z).squeeze(-1))
    return z.squeeze(-1), log_joint


@pytest.mark.slow
def test_elbo_and_importance_sampled_nll_bound_the_exact_likelihood_of_a_one_dimensional_latent(glyph_set):
    model = vae(latent_dim=1, context_dim=1, width=4, dtype=F64)
    images = glyphs(glyph_set, 1, 3, dtype=F64)[0][0]                                # [3, 1, 28, 28]
    with torch.no_grad():
        model.decoder.fc.weight.mul_(4)            # p(x | z) depends strongly on z: a narrow posterior
        for image in images:
            z, log_joint = log_joint_on_a_grid(model, image)
            step = (z[1] - z[0]).item()
            exact = -(torch.logsumexp(log_joint, 0) + math.log(step))                # trapezoid rule
            weights = (log_joint - torch.logsumexp(log_joint, 0)).exp()
            post_mean = (weights * z).sum()
            post_var = (weights * (z - post_mean) ** 2).sum()
            # q(z | x) = the exact posterior's mean with twice its standard deviation: a loose ELBO (KL of
            # about 0.8 nats), and a proposal whose tails cover the posterior, so IS converges fast.
            model.encoder.fc.weight.zero_()
            model.encoder.fc.bias.copy_(torch.stack([post_mean, (4 * post_var).log()]))
            noise = torch.randn(1, 4000, 1, generator=torch.Generator().manual_seed(0), dtype=F64)
            analytic = model(image[None], noise)               # −ELBO with the analytic KL
            mc_elbo, tight = gen.query_scores(model, params_of(model), {}, image[None, None], 4000,
                                              torch.Generator().manual_seed(1))
            assert analytic.item() > exact.item() + 0.5, "the ELBO must be a strictly looser bound here"
            assert mc_elbo.item() == pytest.approx(analytic.item(), abs=0.1)            # E[IS, S=1] = ELBO
            assert tight.item() == pytest.approx(exact.item(), abs=0.05)                 # IS, S=4000 → log p(x)


def test_importance_sampling_with_one_sample_is_the_single_sample_elbo_estimate(glyph_set):
    model = vae()
    query = glyphs(glyph_set, 2, 3)[1]
    first = gen.query_scores(model, params_of(model), {}, query, 1, torch.Generator().manual_seed(1))
    torch.testing.assert_close(first[0], first[1])
    noise = torch.randn(*query.shape[:2], 1, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        log_w = gen.per_task(model, params_of(model), {}, "log_weights", query, noise)
    torch.testing.assert_close(first[1], -log_w[..., 0])


def adapt_config(**changes) -> MetaConfig:
    settings = dict(algorithm="metasgd", inner_steps=3, inner_lr=0.5, adapt=("context",))
    return MetaConfig(**{**settings, **changes})


def test_adapting_the_context_lowers_the_support_loss_and_moves_the_prior_towards_the_support(glyph_set):
    model, cfg = vae(), adapt_config()
    with torch.no_grad():     # posterior means around 2, away from the prior N(0, I) the context starts at
        model.encoder.fc.bias[:4] += 2.0
    support = glyphs(glyph_set, 4, 5)[0]
    params = init_meta_params(model, cfg)
    adapted = gen.adapt(model, params, support, cfg, torch.Generator().manual_seed(0))
    assert adapted.keys() == {"context"} and adapted["context"].shape == (4, 4)
    noise = torch.randn(4, 5, 1, 4, generator=torch.Generator().manual_seed(0))   # the noise adapt drew
    with torch.no_grad():
        before = gen.per_task(model, params, {}, "forward", support, noise).mean(1)
        after = gen.per_task(model, params, adapted, "forward", support, noise).mean(1)
        target = model.posterior(support.flatten(0, 1))[:, :4].view(4, 5, 4).mean(1)
        prior_mean = model.prior.weight[:4] @ adapted["context"].T + model.prior.bias[:4, None]
    assert torch.all(after < before - 1.0), (before, after)
    assert torch.all((prior_mean.T - target).norm(dim=1) < 0.5 * target.norm(dim=1))


def test_vectorised_adaptation_matches_the_meta_inner_loop_task_by_task(glyph_set):
    model = vae(dtype=F64)
    cfg = adapt_config(inner_steps=2, per_step_lr=True, adapt=("context", "decoder.out"))
    params = init_meta_params(model, cfg)
    with torch.no_grad():
        params["inner_lr.decoder.out.weight"].fill_(1e-3)
        params["inner_lr.decoder.out.bias"].fill_(1e-3)
    support = glyphs(glyph_set, 3, 2, dtype=F64)[0]
    adapted = gen.adapt(model, params, support, cfg, torch.Generator().manual_seed(2))
    noise = torch.randn(3, 2, 1, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float32).to(F64)
    names = ("context", "decoder.out.weight", "decoder.out.bias")
    for task in range(3):
        reference = inner_loop(model, {n: t for n, t in params.items() if not n.startswith("inner_lr.")},
                               (support[task], noise[task]), None, gen.mean_loss, steps=2, create_graph=False,
                               lr=inner_rates(cfg, params, names), adapt=cfg.adapt)
        for name in names:
            torch.testing.assert_close(adapted[name][task], reference[name].detach(), msg=name)


@pytest.mark.parametrize("adapt", [("context",), ("context", "decoder.out")])
def test_vmapped_and_looped_meta_gradients_agree_for_the_conditional_vae(glyph_set, adapt):
    model = vae(dtype=F64)
    cfg = adapt_config(inner_steps=2, inner_lr=1e-3 if len(adapt) > 1 else 0.5, adapt=adapt)
    params = init_meta_params(model, cfg)
    support, query = glyphs(glyph_set, 3, 2, n_query=3, dtype=F64)
    batch = gen.task_batch(support, query, 4, torch.Generator().manual_seed(0))
    batch = type(batch)(*(tuple(x.to(F64) for x in t) if isinstance(t, tuple) else t.to(F64) for t in batch))
    loss_v, grads_v = meta_gradient(model, params, batch, cfg, gen.mean_loss, vectorised=True)
    loss_l, grads_l = meta_gradient(model, params, batch, cfg, gen.mean_loss, vectorised=False)
    torch.testing.assert_close(loss_v, loss_l, rtol=1e-12, atol=0)
    for name in params:
        torch.testing.assert_close(grads_v[name], grads_l[name], rtol=1e-9, atol=1e-11, msg=name)
        assert grads_v[name].abs().sum() > 0, f"{name} gets no meta-gradient"


def test_bad_inputs_are_rejected_with_messages_that_name_them():
    model = vae()
    with pytest.raises(ConfigError, match="has no method 'sample'"):
        gen.call(model, params_of(model), "sample", torch.zeros(1, 4))
    with pytest.raises(DataError, match=r"noise \[n, S, 4\]; found \(2, 1, 28, 28\) and \(3, 1, 4\)"):
        model(torch.zeros(2, 1, 28, 28), torch.zeros(3, 1, 4))
    with pytest.raises(ConfigError, match="number of tasks is unknown"):
        gen.per_task(model, params_of(model), {}, "prior_params")
    with pytest.raises(ConfigError, match="latent_dim=0"):
        gen.ConditionalVAE(latent_dim=0)
    with pytest.raises(ConfigError, match="blocks=-1; expected a whole number"):
        gen.ConditionalVAE(blocks=-1)
    with pytest.raises(ConfigError, match="pass tasks="):
        gen.sample(model, params_of(model), {}, 2, torch.Generator())
    with pytest.raises(ConfigError, match="temperature=-0.5"):
        gen.sample(model, params_of(model), {}, 2, torch.Generator(), tasks=1, temperature=-0.5)


def test_residual_decoder_blocks_start_as_the_identity_then_train_with_the_joint_vae(glyph_set):
    plain, deeper = vae(), gen.ConditionalVAE(4, 4, 4, blocks=2)
    deeper.load_state_dict(plain.state_dict(), strict=False)       # every weight but the blocks'
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(deeper.decoder(z, deeper.context), plain.decoder(z, plain.context), rtol=0, atol=0)
    names = [n for n, _ in deeper.named_parameters()]
    trained = gen.joint_names(names)
    assert {"decoder.refine.0.weight", "decoder.refine.1.bias", "decoder.up.weight"} <= set(trained)
    assert not {"context", "prior.weight", "encoder.film.weight", "decoder.film.bias"} & set(trained)
    assert gen.joint_names([n for n, _ in plain.named_parameters()]) == tuple(
        n for n in trained if not n.startswith("decoder.refine."))
    joint = gen.train_joint(deeper, glyph_set.split("background").select_classes(list(range(10))), steps=3,
                            batch_size=8)
    assert joint["decoder.refine.0.weight"].abs().sum() > 0 and torch.equal(joint["context"], torch.zeros(4))


def test_sampling_temperature_scales_the_prior_noise(glyph_set):
    model = vae()
    params = params_of(model)
    with torch.no_grad():
        params["prior.bias"] = torch.randn(8)            # a prior away from N(0, I)
    cold = gen.sample(model, params, {}, 3, torch.Generator().manual_seed(1), tasks=2, temperature=0.0)
    assert torch.equal(cold[:, :1].expand_as(cold), cold)    # τ = 0: every sample decodes the prior mean
    mean, logvar = params["prior.bias"].chunk(2)
    with torch.no_grad():
        expected = torch.sigmoid(model.decoder(mean[None], model.context))
    torch.testing.assert_close(cold[0, 0], expected[0])
    warm = gen.sample(model, params, {}, 3, torch.Generator().manual_seed(1), tasks=2)
    half = gen.sample(model, params, {}, 3, torch.Generator().manual_seed(1), tasks=2, temperature=0.5)
    noise = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for tau, got in ((1.0, warm), (0.5, half)):
            z = mean + tau * (0.5 * logvar).exp() * noise
            torch.testing.assert_close(got, torch.sigmoid(model.decoder(z.flatten(0, 1), model.context)).view_as(got))


def test_class_contexts_give_each_class_its_own_prior_and_start_meta_training_at_their_mean(glyph_set):
    images = glyph_set.split("background").select_classes(list(range(6)))
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = gen.ConditionalVAE(4, 4, 4)
        joint = gen.train_joint(model, images, steps=200, batch_size=16)
        contexts = gen.train_class_contexts(model, images, steps=200, classes_per_step=3, images_per_class=4,
                                            context_lr=0.1, seed=1)
        runs.append((contexts, params_of(model)))
    (contexts, params), (contexts_again, params_again) = runs
    assert all(torch.equal(params[n], params_again[n]) for n in params) and torch.equal(contexts, contexts_again)
    assert contexts.shape == (6, 4) and torch.equal(params["context"], contexts.mean(0))
    assert not torch.equal(params["decoder.out.weight"], joint["decoder.out.weight"])
    for film in ("encoder.film.weight", "decoder.film.weight"):      # FiLM stays the identity
        assert torch.equal(params[film], joint[film])
    # Each class's prior mean m(c_j) has moved to where that class's images are encoded.
    pixels, labels = torch.from_numpy(images.images), torch.from_numpy(images.labels)
    with torch.no_grad():
        mu = gen.call(model, params, "posterior", pixels)[:, :4]
        prior_means = (contexts @ params["prior.weight"].T + params["prior.bias"])[:, :4]
    class_means = torch.stack([mu[labels == j].mean(0) for j in range(6)])
    distance = torch.cdist(prior_means, class_means)                           # [context, class]
    own, other = distance.diagonal().mean(), (distance.sum() - distance.diagonal().sum()) / 30
    assert own < 0.25 * other, distance


def test_class_contexts_refuse_bad_settings_by_name(glyph_set):
    images = glyph_set.split("background").select_classes(list(range(6)))
    with pytest.raises(ConfigError, match="steps=0"):
        gen.train_class_contexts(vae(), images, steps=0)
    with pytest.raises(DataError, match="fewer images than the 500 requested"):
        gen.train_class_contexts(vae(), images, steps=1, classes_per_step=2, images_per_class=500)
    with pytest.raises(DataError, match="n_way=16 but"):
        gen.train_class_contexts(vae(), images, steps=1)


def test_the_docstring_example_of_adapt_and_sample_holds():
    import doctest
    assert doctest.testmod(gen).failed == 0
