"""Few-shot generation measured (notebook 04): the baselines and the evaluation protocol.

Baselines start from the jointly trained, class-agnostic VAE of :mod:`metagen_utils.generation.vae`: its
N(0, I) prior; a Gaussian prior fitted to the support images' posterior means; fine-tuning on the K
support images. :func:`score_methods` runs every method on the same unseen-class episodes and reports query
−ELBO and importance-sampled NLL (nats per image), class fidelity, diversity and the Fréchet distance in
a glyph classifier's feature space. Models may sit on any device; random numbers are drawn on the CPU
(the same on every device) and results come back on the CPU.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import vmap

from .classifier import diversity, features, fidelity_from_features, frechet_distance
from ..data.images import ImageSet
from .vae import (IMAGE_SHAPE, ConditionalVAE, Params, adapt, call, joint_names, mean_loss, per_task,
                  query_scores, sample)
from ..errors import ConfigError
from ..stats import choose
from ..meta.maml import MetaConfig, inner_loop
from ..data.episodes import EpisodeSampler


# --- Baselines ------------------------------------------------------------------------------------

def latent_spread(model: ConditionalVAE, joint: Params, images: ImageSet, classes: int = 200,
                  seed: int = 0) -> tuple[Tensor, Tensor]:
    """(within-class variance of the posterior means, mean posterior variance), each ``[latent_dim]``,
    pooled over ``classes`` classes of ``images`` (background): what the support-fitted Gaussian
    needs to know about a class's spread, learned from seen classes like everything else."""
    rng = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(images.num_classes, generator=rng)[:classes]
    keep = torch.isin(torch.from_numpy(images.labels), chosen)
    x, labels = torch.from_numpy(images.images)[keep], torch.from_numpy(images.labels)[keep]
    with torch.no_grad():
        mu, logvar = call(model, joint, "posterior", x.to(model.context.device)).cpu().chunk(2, dim=-1)
    _, inverse = labels.unique(return_inverse=True)
    counts = torch.bincount(inverse).float()[:, None]
    class_means = torch.zeros(len(counts), mu.shape[1]).index_add_(0, inverse, mu) / counts
    within = ((mu - class_means[inverse]) ** 2).sum(0) / (len(mu) - len(counts))
    return within, logvar.exp().mean(0)


def support_gaussian(model: ConditionalVAE, joint: Params, support: Tensor,
                     spread: tuple[Tensor, Tensor]) -> Params:
    """The joint VAE with p(z) = N(m, diag v) fitted to each task's support: m = mean of the support's
    posterior means, v = within·(1 + 1/K) + mean posterior variance (a new image of the class scatters
    around the true class mean, which m estimates from K images). Returns ``{"prior.bias": [T, 2L]}``
    (c = 0 in the joint VAE, so the prior is its bias)."""
    within, posterior_var = (t.to(support.device) for t in spread)
    with torch.no_grad():
        mu = call(model, joint, "posterior", support.flatten(0, 1))[:, :model.latent_dim]
    mean = mu.view(*support.shape[:2], -1).mean(1)
    var = within * (1 + 1 / support.shape[1]) + posterior_var
    return {"prior.bias": torch.cat([mean, var.log().expand_as(mean)], dim=-1)}


def finetune(model: ConditionalVAE, joint: Params, support: Tensor, steps: int, lr: float,
             generator: torch.Generator, chunk: int = 16) -> Params:
    """The joint VAE fine-tuned per task: ``steps`` Adam steps (rate ``lr``, fresh noise each step) of the
    support −ELBO on encoder and decoder, prior N(0, I). Returns ``{name: [T, *shape]}``."""
    names = joint_names(list(joint))
    shared = {n: t.detach() for n, t in joint.items() if n not in names}
    start = {n: joint[n].detach() for n in names}
    noise = torch.randn(support.shape[0], steps, support.shape[1], 1, model.latent_dim,
                        generator=generator).to(support.device)                  # [T, steps, K, 1, L]

    def one_task(images: Tensor, eps: Tensor) -> Params:     # fresh noise eps[step] at every step
        tuned = inner_loop(model, {**shared, **start}, lambda step: (images, eps[step]), None, mean_loss, steps,
                           lr, adapt=names, optimizer="adam")
        return {n: tuned[n] for n in names}
    with torch.no_grad():
        parts = [vmap(one_task)(support[i:i + chunk], noise[i:i + chunk]) for i in range(0, len(support), chunk)]
    return {n: torch.cat([p[n] for p in parts]) for n in names}


FINETUNE_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)


def choose_finetune_lr(model: ConditionalVAE, joint: Params, images: ImageSet,
                       steps: int | Mapping[int, int], k_shots: Sequence[int] = (1, 5),
                       rates: Sequence[float] = FINETUNE_RATES, n_episodes: int = 8, n_way: int = 5,
                       n_query: int = 5, is_samples: int = 8,
                       seed: int = 0) -> tuple[dict[int, float], dict[int, dict[float, float]]]:
    """The fine-tuning baseline's Adam rate for each K, tuned on ``images`` (the validation split) before
    it is compared with anything, as notebook 03 tunes its baseline's step size.

    For each K and rate, the joint VAE is fine-tuned on every class-task's K support images for
    4 × ``steps`` steps (the longer of :func:`score_methods`'s two budgets; ``steps`` per K as there),
    and scored by the mean query IS-NLL. Episodes take at most as many classes as ``images`` has (a
    small folder's validation split may hold fewer than ``n_way``). Returns ({K: the rate with the
    lowest}, {K: {rate: IS-NLL}}).
    """
    n_way = min(n_way, images.num_classes)
    support, query, _ = _class_tasks(model, None, images, max(k_shots), n_episodes, n_way, n_query, seed)
    steps_at = steps_per_shot(steps, k_shots, 1)
    best, table = {}, {}
    for k in k_shots:
        rng = _random_numbers(seed, k)

        def nll(rate: float, k: int = k) -> float:
            tuned = finetune(model, joint, support[:, :k], 4 * steps_at[k], rate, rng(0))
            return query_scores(model, joint, tuned, query, is_samples, rng(2))[1].mean().item()
        best[k], scores = choose(rates, lambda rate: -nll(rate))
        table[k] = {rate: -score for rate, score in scores.items()}
    return best, table


# --- Evaluation -----------------------------------------------------------------------------------

def score_methods(model: ConditionalVAE, meta_params: Params, joint: Params, cfg: MetaConfig, classifier: nn.Module,
             images: ImageSet, spread: tuple[Tensor, Tensor], k_shots: Sequence[int] = (1, 5),
             n_episodes: int = 40, n_way: int = 5, n_query: int = 15, n_samples: int = 10, nll_images: int = 5,
             is_samples: int = 16, steps: int | Mapping[int, int] | None = None,
             finetune_lr: float | Mapping[int, float] = 3e-4,
             temperatures: Sequence[float] = (), seed: int = 0) -> dict[int, dict[str, dict]]:
    """Every method on the same ``n_episodes`` ``n_way``-way episodes of ``images`` (the evaluation split).

    Each class of an episode is one task: its first K support images go in, ``n_samples`` images come
    out; its ``n_query`` held-out images are the prototypes for fidelity and the reference set of the
    Fréchet distance, and the first ``nll_images`` of them are scored (−ELBO and IS-NLL, ``is_samples``).
    The meta-learned model adapts for ``steps`` inner steps (default ``cfg.inner_steps``; Meta-SGD rates
    are per parameter, so more steps at test time are allowed), one number for every K or ``{K: steps}``;
    the joint VAE is fine-tuned for as many steps and 4 × as many (Adam at ``finetune_lr``, one rate or
    ``{K: rate}``; notebook 04 tunes it on the validation split with :func:`choose_finetune_lr`). Every method draws the same sampling and scoring
    noise (common random numbers), so paired differences are not blurred by the draws.

    Samples are drawn at temperature 1 (the model as trained). Each τ of ``temperatures`` also samples
    every generator at z = m + τ e^{s/2} ε from the same noise, for a fidelity–diversity curve: lower τ
    buys fidelity with diversity, so two generators compare fairly only at equal diversity.

    Returns ``{K: {method: {"nelbo", "nll", "fidelity", "diversity": [T] arrays, "frechet": float,
    "samples": [T, n_samples, 1, 28, 28], "features": [T, n_samples, D] and "reference_features":
    [T, n_query, D] (classifier features, for :func:`metagen_utils.generation.classifier.frechet_difference`),
    "temperatures": {τ: {"fidelity", "diversity": [T] arrays}}}}}``, T = n_episodes · n_way class-tasks in
    the same order for every method. ``"real support"`` is the reference: the support images as samples (no
    likelihood, and no temperatures to vary).
    """
    check_temperatures(temperatures)
    supports, query, query_feats = _class_tasks(model, classifier, images, max(k_shots), n_episodes, n_way,
                                                n_query, seed)
    tasks = len(supports)
    steps_at = steps_per_shot(steps, k_shots, cfg.inner_steps)
    rate_at = steps_per_shot(finetune_lr, k_shots, 3e-4, "finetune_lr")
    results: dict[int, dict[str, dict]] = {}
    for k in k_shots:
        support = supports[:, :k]
        rng = _random_numbers(seed, k)
        methods = {
            "meta-learned, adapted": (meta_params, adapt(model, meta_params, support, cfg, rng(0), steps=steps_at[k])),
            "meta-learned, before adaptation": (meta_params, {}),
            "joint VAE, N(0, I) prior": (joint, {}),
            "joint VAE, support-fitted Gaussian": (joint, support_gaussian(model, joint, support, spread)),
            **{f"joint VAE, fine-tuned {n} steps": (joint, finetune(model, joint, support, n, rate_at[k], rng(0)))
               for n in (steps_at[k], 4 * steps_at[k])},
        }
        results[k] = {}
        for name, (params, adapted_params) in methods.items():
            nelbo, nll = query_scores(model, params, adapted_params, query[:, :nll_images], is_samples, rng(2))
            def draw(tau: float, params: Params = params, adapted_params: Params = adapted_params) -> Tensor:
                return sample(model, params, adapted_params, n_samples, rng(1), tasks=tasks,
                              temperature=tau).cpu()   # the same noise at every τ (rng(1) afresh), scaled
            results[k][name] = {**_quality(draw(1.0), query_feats, classifier, n_way),
                                "nelbo": nelbo.mean(1).cpu().numpy(), "nll": nll.mean(1).cpu().numpy(),
                                "temperatures": cooler_scores(draw, temperatures, query_feats, classifier, n_way)}
        nothing = torch.full((tasks,), math.nan).numpy()
        results[k]["real support"] = {**_quality(support.cpu(), query_feats, classifier, n_way), "nelbo": nothing,
                                      "nll": nothing, "temperatures": {}}
    return results


def score_adapted(model: ConditionalVAE, meta_params: Params, cfg: MetaConfig, classifier: nn.Module,
                     images: ImageSet, k_shots: Sequence[int] = (1, 5), n_episodes: int = 40, n_way: int = 5,
                     n_query: int = 15, n_samples: int = 10, steps: int | Mapping[int, int] | None = None,
                     breakdown: bool = False, seed: int = 0) -> dict[int, dict]:
    """The meta-learned model alone, adapted and sampled exactly as :func:`score_methods` does it (the same
    class-tasks, the same noise, so the same numbers), without likelihoods or baselines: a few seconds
    instead of minutes, for weights trained elsewhere (:mod:`metagen_utils.generation.pretrained`).
    Returns ``{K: {"fidelity", "diversity", "frechet", "samples", "features", "reference_features"}}`` as
    in :func:`score_methods`'s ``"meta-learned, adapted"`` entry; with ``breakdown``, also ``"breakdown"``
    (:data:`BREAKDOWN`'s rows), ``"mean_error"``, ``"support_error"`` and ``"class_scatter"`` from
    :func:`fidelity_breakdown`."""
    supports, query, query_feats = _class_tasks(model, classifier, images, max(k_shots), n_episodes, n_way,
                                                n_query, seed)
    steps_at = steps_per_shot(steps, k_shots, cfg.inner_steps)
    results = {}
    for k in k_shots:
        rng = _random_numbers(seed, k)
        adapted = adapt(model, meta_params, supports[:, :k], cfg, rng(0), steps=steps_at[k])
        generated = sample(model, meta_params, adapted, n_samples, rng(1))
        results[k] = _quality(generated.cpu(), query_feats, classifier, n_way)
        if breakdown:
            add_breakdown(results[k], model, meta_params, adapted, supports[:, :k], query, query_feats,
                          classifier, n_way, rng(1))
    return results


def add_breakdown(scores: dict, model: ConditionalVAE, meta_params: Params, adapted: Params, support: Tensor,
                  query: Tensor, query_feats: Tensor, classifier: nn.Module, n_way: int,
                  sampling: torch.Generator) -> None:
    """Add :func:`fidelity_breakdown`'s ``"breakdown"`` (its first row: ``scores``' own fidelity and
    diversity) and distances to ``scores``, the adapted model's entry for ``support``. ``sampling``: a
    fresh copy of the generator its samples were drawn with, so that every row uses their noise."""
    noise = torch.randn(len(support), len(scores["samples"][0]), model.latent_dim, generator=sampling)
    rows, distances = fidelity_breakdown(model, meta_params, adapted, support, query, query_feats, classifier,
                                         n_way, noise)
    scores.update(breakdown={BREAKDOWN[0]: {"fidelity": scores["fidelity"], "diversity": scores["diversity"]},
                             **rows}, **distances)


# The adapted model's samples, then the latents :func:`fidelity_breakdown` feeds its decoder instead.
BREAKDOWN = ("adapted prior", "support, encoded and decoded", "support mean, adapted spread",
             "held-out mean, adapted spread", "adapted mean, held-out spread", "held-out mean and spread")


def fidelity_breakdown(model: ConditionalVAE, meta_params: Params, adapted: Params, support: Tensor, query: Tensor,
                       query_feats: Tensor, classifier: nn.Module, n_way: int,
                       noise: Tensor) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Where the adapted model's fidelity is lost: each task's adapted decoder (and c), whose samples
    z ~ p(z | c_adapted) = N(m, diag eˢ) are :data:`BREAKDOWN`'s first row, fed other latents:

    * ``"support, encoded and decoded"`` — z = the posterior means of the K ``support`` images: how well
      the decoder draws this class (compare the real support's fidelity; diversity NaN at K = 1);
    * ``"support mean, adapted spread"`` — z = (their mean) + e^{s/2} ε: the prior moved from the mean
      the inner loop chose onto the support's own latents, without any knowledge of held-out images;
    * ``"held-out mean, adapted spread"`` — z = m* + e^{s/2} ε, where m* is the mean of the posterior means
      of the class's ``query`` images: the prior with the class's latent mean known;
    * ``"adapted mean, held-out spread"`` — z = m + sd* ε, sd* those posterior means' standard deviation;
    * ``"held-out mean and spread"`` — z = m* + sd* ε: a diagonal Gaussian fitted to the class.

    m* and sd* look at the held-out images that fidelity's prototypes come from: they measure what a better
    estimate of the class's latent mean or spread would be worth; they are not a method. ``noise``
    ``[T, n, L]`` is the ε of every Gaussian (pass the adapted samples' own, so rows differ only in m and
    the spread). support ``[T, K, 1, 28, 28]`` and query ``[T, Q, 1, 28, 28]`` on the model's device;
    query_feats ``[T, Q, D]``, the query images' classifier features.
    Returns ``({name: {"fidelity", "diversity": [T] arrays}}, {"mean_error", "support_error",
    "class_scatter": [T] arrays})``: root-mean-squares over latent dimensions of m − m*, of (the support's
    mean posterior mean) − m*, and of sd* (how far the adapted mean and the support's own latents miss the
    class's mean, and how far the class's own images scatter around it).
    """
    latent = model.latent_dim
    mean, logvar = _task_prior(model, meta_params, adapted)                      # [T, L] each
    with torch.no_grad():
        held_out = per_task(model, meta_params, adapted, "posterior", query)[..., :latent]      # [T, Q, L]
        encoded = per_task(model, meta_params, adapted, "posterior", support)[..., :latent]     # [T, K, L]
    held_mean, held_sd = held_out.mean(1)[:, None], held_out.std(1)[:, None]
    support_mean = encoded.mean(1)[:, None]
    spread, noise = (0.5 * logvar).exp()[:, None], noise.to(mean.device)
    latents = dict(zip(BREAKDOWN[1:], (encoded, support_mean + spread * noise, held_mean + spread * noise,
                                       mean[:, None] + held_sd * noise, held_mean + held_sd * noise)))
    rows = {}
    for name, z in latents.items():
        images = decode_latents(model, meta_params, adapted, z).cpu()
        fidelity, diverse = _fidelity_and_diversity(features(classifier, images), query_feats, images, n_way)
        rows[name] = {"fidelity": fidelity, "diversity": diverse}
    def rms(difference: Tensor) -> np.ndarray:   # over latent dimensions, one number per task
        return (torch.linalg.vector_norm(difference, dim=-1) / difference.shape[-1] ** 0.5)[:, 0].cpu().numpy()
    return rows, {"mean_error": rms(mean[:, None] - held_mean), "support_error": rms(support_mean - held_mean),
                  "class_scatter": rms(held_sd)}


def decode_latents(model: ConditionalVAE, params: Params, adapted_params: Params, latents: Tensor) -> Tensor:
    """Bernoulli means ``[T, n, 1, 28, 28]`` of given latents ``[T, n, latent_dim]``, each task's decoded by
    its own (adapted) decoder and c: the model's ``decode`` with the prior swapped for N(0, I), so z = ε."""
    standard = {n: torch.zeros(len(latents), *params[n].shape, device=latents.device)
                for n in ("prior.weight", "prior.bias")}
    with torch.no_grad():
        return per_task(model, params, {**adapted_params, **standard}, "decode", latents)


def _task_prior(model: ConditionalVAE, params: Params, adapted_params: Params) -> tuple[Tensor, Tensor]:
    """(mean, log-variance) of each task's p(z | c), ``[T, latent_dim]`` each: the model's ``prior_params``
    with the task's adapted tensors where it has them."""
    with torch.no_grad():
        return per_task(model, params, adapted_params, "prior_params")


def _class_tasks(model: ConditionalVAE, classifier: nn.Module, images: ImageSet, k_max: int, n_episodes: int,
                 n_way: int, n_query: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """The evaluation's class-tasks: (supports ``[T, k_max, 1, 28, 28]`` and query images on the model's
    device, the query images' classifier features ``[T, n_query, D]``, None without a classifier),
    T = n_episodes · n_way."""
    episode = EpisodeSampler(images, k_max, n_query, n_way, seed).sample(n_episodes)
    tasks, device = n_episodes * n_way, model.context.device
    query = episode.query.view(tasks, n_query, *IMAGE_SHAPE)
    return (episode.support.view(tasks, k_max, *IMAGE_SHAPE).to(device), query.to(device),
            None if classifier is None else features(classifier, query))


def cooler_scores(draw: Callable[[float], Tensor], temperatures: Sequence[float], query_feats: Tensor,
                  classifier: nn.Module, n_way: int) -> dict[float, dict]:
    """{τ: {"fidelity", "diversity": [T] arrays}} of the images ``draw(τ)`` ``[T, G, 1, 28, 28]`` for each τ."""
    scored = {}
    for tau in temperatures:
        cooler = draw(tau)
        fidelity, diverse = _fidelity_and_diversity(features(classifier, cooler), query_feats, cooler, n_way)
        scored[tau] = {"fidelity": fidelity, "diversity": diverse}
    return scored


def _random_numbers(seed: int, k: int):
    """``rng(use)``: a fresh generator per use (0: adaptation, 1: sampling, 2: scoring), the same for every
    method at this K, so differences between methods are paired."""
    return lambda use: torch.Generator().manual_seed(seed * 1000 + k * 10 + use)


def check_temperatures(temperatures: Sequence[float]) -> None:
    """Refuse sampling temperatures outside [0, 1) for :func:`score_methods` (τ = 1 is always scored), before
    any training is spent on a run that would fail at its end."""
    if isinstance(temperatures, (str, bytes)) or any(
            not isinstance(t, (int, float)) or not 0 <= t < 1 for t in temperatures):
        raise ConfigError(f"temperatures={temperatures!r}; expected a list of numbers in [0, 1), e.g. "
                          "[0.4, 0.6, 0.8] (τ = 1 is always scored)")


def steps_per_shot(steps: float | Mapping[int, float] | None, k_shots: Sequence[int], default: float,
                   name: str = "steps") -> dict[int, float]:
    """``{K: value}`` for every K of ``k_shots`` from one number, a mapping, or None (``default``): the
    inner steps, or another setting ``name`` given per K (the fine-tuning rate)."""
    if steps is None:
        return {k: default for k in k_shots}
    if isinstance(steps, Mapping):
        missing = [k for k in k_shots if k not in steps]
        if missing:
            raise ConfigError(f"score_methods: {name}={dict(steps)!r} gives no value for K = {missing}")
        return {k: steps[k] for k in k_shots}
    return {k: steps for k in k_shots}


def _quality(generated: Tensor, query_feats: Tensor, classifier: nn.Module, n_way: int) -> dict:
    """Fidelity, diversity (per task) and the pooled Fréchet distance of ``generated`` ``[T, G, 1, 28, 28]``."""
    feats = features(classifier, generated)                                                    # [T, G, D]
    fidelity, diverse = _fidelity_and_diversity(feats, query_feats, generated, n_way)
    return {"fidelity": fidelity, "diversity": diverse, "frechet": frechet_distance(feats.flatten(0, 1),
            query_feats.flatten(0, 1)), "samples": generated, "features": feats, "reference_features": query_feats}


def _fidelity_and_diversity(feats: Tensor, query_feats: Tensor, generated: Tensor, n_way: int) -> tuple:
    """Per-task fidelity and diversity (numpy ``[T]`` each) of ``generated`` with classifier features ``feats``."""
    episodes = feats.view(-1, n_way, *feats.shape[1:]), query_feats.view(-1, n_way, *query_feats.shape[1:])
    return fidelity_from_features(*episodes).flatten().numpy(), diversity(generated).numpy()
