"""Notebook 05's evaluation: notebook 04's protocol (:mod:`metagen_utils.generation.evaluation`) for the
class-code VAE's three methods, beside notebook 04's committed model and its support-fitted Gaussian.

:func:`score_references` draws the class-tasks and scores the references on them once (notebook 05's
section 1 shows where notebook 04's model loses fidelity from it); :func:`score_methods` then scores
each way on the same tasks with the same random numbers, so differences are paired.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..data.images import ImageSet
from ..errors import ConfigError
from ..generation import vae as gen
from ..generation.classifier import features
from ..generation.evaluation import (_class_tasks, _fidelity_and_diversity, _quality, _random_numbers,
                                     add_breakdown, check_temperatures, cooler_scores, latent_spread,
                                     support_gaussian)
from ..generation.pretrained import TrainedWeights
from ..meta.maml import Params
from ..profiles import META_VAE_MODEL
from .set_vae import ClassVAE, LatentPrior, call, contexts, query_scores, sample

REFERENCES = ("04's full model", "support-fitted Gaussian")
# Where a way's fidelity goes: its own samples, its decoder redrawing the support under its code, and its
# samples under the code it finds from the class's held-out images (fidelity_breakdown).
BREAKDOWN = ("own samples", "support, encoded and decoded", "code from held-out images")
# A generator to score: (the class-code VAE, how it finds c, its meta-parameters).
Way = tuple[ClassVAE, str, Params]


@dataclass(frozen=True)
class Evaluation:
    """The class-tasks of one evaluation, how they are scored, and the references scored on them
    (:func:`score_references`); :func:`score_methods` scores generators on the very same tasks and noise.

    supports ``[T, max K, 1, 28, 28]``, query ``[T, Q, 1, 28, 28]``: each task's support and held-out
    images; query_feats ``[T, Q, D]``: the held-out images' classifier features; scores: ``{K: {name:
    scores}}`` of :data:`REFERENCES` and the real support."""

    supports: Tensor
    query: Tensor
    query_feats: Tensor
    classifier: nn.Module
    n_way: int
    n_samples: int
    nll_images: int
    is_samples: int
    temperatures: tuple[float, ...]
    seed: int
    scores: dict[int, dict[str, dict]]


def _not_scored(tasks: int) -> np.ndarray:
    """NaN for each of ``tasks`` tasks ``[T]``: a score that does not apply (the real support's IS-NLL)
    or was skipped (``score_methods(likelihood=False)``)."""
    return np.full(tasks, math.nan, dtype=np.float32)


def refit_gaussian(reference: TrainedWeights, images: ImageSet, seed: int = 0,
                   steps: int | None = None) -> TrainedWeights:
    """``reference`` with the support-fitted Gaussian's VAE trained again on ``images`` alone, so that
    the Gaussian knows only the classes the ways of notebook 05 trained on (its small-data runs):
    notebook 04's joint VAE, the same network and learning rate, ``steps`` steps of 64 images, then
    the spread the Gaussian needs (:func:`latent_spread`). The default (None) is notebook 04's cpu-profile
    steps, 1,200: on 100 glyph classes the committed run's 4,800 over-fit them (validation scripts,
    fidelity at K = 1 / 5: 0.641 / 0.767 against 0.664 / 0.787 with 1,200). Notebook 04's
    meta-learned weights stay as committed. Runs on the CPU."""
    torch.manual_seed(seed)                      # as notebook 04 seeds its model's initial weights
    model = reference.model()
    steps = META_VAE_MODEL["joint_steps"] if steps is None else steps
    joint = gen.train_joint(model, images, steps=steps, batch_size=64, lr=META_VAE_MODEL["joint_lr"], seed=seed)
    return dataclasses.replace(reference, joint=joint, spread=latent_spread(model, joint, images, seed=seed))


def score_references(classifier: nn.Module, images: ImageSet, reference: TrainedWeights,
                     k_shots: Sequence[int] = (1, 5), n_episodes: int = 40, n_way: int = 5, n_query: int = 15,
                     n_samples: int = 10, nll_images: int = 5, is_samples: int = 16,
                     temperatures: Sequence[float] = (), breakdown: bool = False, seed: int = 0) -> Evaluation:
    """:data:`REFERENCES` from notebook 04's committed ``reference`` weights, and the real support, on
    ``n_episodes`` ``n_way``-way episodes of ``images``: notebook 04's protocol
    (:func:`metagen_utils.generation.evaluation.score_methods`, the same tasks and noise for one seed).

    A class-task's first K images are its support; ``n_samples`` images are drawn at τ = 1, and again at
    each τ of ``temperatures`` from the same noise (z = m + τ e^{s/2} ε). Its ``n_query`` held-out images
    are the prototypes of fidelity and the Fréchet distance's reference; the first ``nll_images`` are
    scored (−ELBO and IS-NLL with ``is_samples`` draws, nats per image). ``breakdown`` adds, for notebook
    04's model, where its fidelity goes (:func:`metagen_utils.generation.evaluation.fidelity_breakdown`:
    ``"breakdown"`` rows and its distances). Everything runs on the CPU.
    Scores: ``{K: {name: {"fidelity", "diversity", "nelbo", "nll": [T] arrays, "frechet": float,
    "samples": [T, n_samples, 1, 28, 28], "features", "reference_features",
    "temperatures": {τ: {"fidelity", "diversity": [T] arrays}}}}}``, T = n_episodes · n_way.
    """
    check_temperatures(temperatures)
    old, cfg = reference.model(), reference.meta_config()
    supports, query, query_feats = _class_tasks(old, classifier, images, max(k_shots), n_episodes, n_way,
                                                n_query, seed)
    scores: dict[int, dict[str, dict]] = {}
    for k in k_shots:
        support, rng = supports[:, :k], _random_numbers(seed, k)
        adapted = gen.adapt(old, reference.meta, support, cfg, rng(0), steps=reference.test_steps()[k])
        fitted = support_gaussian(old, reference.joint, support, reference.spread)
        scores[k] = {}
        for name, (params, task_params) in zip(REFERENCES, ((reference.meta, adapted), (reference.joint, fitted))):
            nelbo, nll = gen.query_scores(old, params, task_params, query[:, :nll_images], is_samples, rng(2))
            def draw(tau: float, params: Params = params, task_params: Params = task_params) -> Tensor:
                return gen.sample(old, params, task_params, n_samples, rng(1), temperature=tau)
            scores[k][name] = {**_quality(draw(1.0), query_feats, classifier, n_way),
                               "nelbo": nelbo.mean(1).numpy(), "nll": nll.mean(1).numpy(),
                               "temperatures": cooler_scores(draw, temperatures, query_feats, classifier, n_way)}
        if breakdown:
            add_breakdown(scores[k][REFERENCES[0]], old, reference.meta, adapted, support, query, query_feats,
                          classifier, n_way, rng(1))
        nothing = _not_scored(len(support))
        scores[k]["real support"] = {**_quality(support, query_feats, classifier, n_way), "nelbo": nothing,
                                     "nll": nothing, "temperatures": {}}
    return Evaluation(supports, query, query_feats, classifier, n_way, n_samples, nll_images, is_samples,
                      tuple(temperatures), seed, scores)


def score_methods(ways: Mapping[str, Way], steps: int, evaluation: Evaluation, breakdown: Sequence[str] = (),
                  priors: Mapping[str, Mapping[int, LatentPrior]] | None = None,
                  likelihood: bool = True) -> dict[int, dict[str, dict]]:
    """Each generator of ``ways`` (``{name: (class-code VAE, method, its meta-parameters)}``, methods of
    :data:`metagen_utils.inference.set_vae.METHODS`) on ``evaluation``'s class-tasks, with the same random
    numbers as its references, so that every difference is paired; ``steps`` inner steps refine c (the
    gradient and hybrid methods). For each way named in ``breakdown``, where its fidelity goes
    (:func:`fidelity_breakdown`). ``priors``: ``{name: {K: LatentPrior}}`` for the ways that draw z near
    their support's latents (:func:`metagen_utils.inference.set_vae.sample`); the others draw z ~ N(0, I).
    ``likelihood=False`` skips the −ELBO and IS-NLL (NaN instead): they score the held-out images under
    the code and draw no samples, so a second scoring with other ``priors`` would only repeat them.
    Each class-code VAE runs on its parameters' device, the scores on the CPU.

    Returns ``{K: {name: scores}}`` for ``ways``, then ``evaluation``'s references, in
    :func:`score_references`'s format, plus ``"breakdown": {row: {"fidelity", "diversity": [T] arrays}}``
    for the ways of ``breakdown``.
    """
    if unknown := sorted(set(breakdown) - set(ways)):
        raise ConfigError(f"breakdown={list(breakdown)!r}: {unknown} are not among the ways {list(ways)}")
    e, priors = evaluation, priors or {}
    if unknown := sorted(set(priors) - set(ways)):
        raise ConfigError(f"priors: {unknown} are not among the ways {list(ways)}")
    if lacking := sorted(name for name, by_k in priors.items() if set(e.scores) - set(by_k)):
        raise ConfigError(f"priors: {lacking} lack a LatentPrior for some K of {sorted(e.scores)}")
    results: dict[int, dict[str, dict]] = {}
    held_out: dict[str, Tensor] = {}     # each way's c from the query images (breakdown)
    for k, references in e.scores.items():
        support, rng = e.supports[:, :k], _random_numbers(e.seed, k)
        results[k] = {}
        for name, (model, method, params) in ways.items():
            device = params["context"].device      # the class-code VAE's; the scores stay on the CPU
            codes = contexts(model, params, method, support.to(device), steps, rng(0))
            if likelihood:
                nelbo, nll = (x.mean(1).cpu().numpy() for x in query_scores(
                    model, params, codes, e.query[:, :e.nll_images].to(device), e.is_samples, rng(2)))
            else:
                nelbo = nll = _not_scored(len(codes))
            prior = priors.get(name, {}).get(k)

            def draw(tau: float, codes: Tensor = codes, model: ClassVAE = model, params: Params = params,
                     prior: LatentPrior | None = prior, support: Tensor = support.to(device)) -> Tensor:
                return sample(model, params, codes, e.n_samples, rng(1), temperature=tau, prior=prior,
                              support=support).cpu()
            results[k][name] = {**_quality(draw(1.0), e.query_feats, e.classifier, e.n_way),
                                "nelbo": nelbo, "nll": nll,
                                "temperatures": cooler_scores(draw, e.temperatures, e.query_feats, e.classifier,
                                                              e.n_way)}
            if name in breakdown:
                if name not in held_out:   # c from the held-out images does not depend on K
                    held_out[name] = contexts(model, params, method, e.query.to(device), steps,
                                              _random_numbers(e.seed, e.query.shape[1])(0))
                results[k][name]["breakdown"] = fidelity_breakdown(
                    model, params, codes, support.to(device), results[k][name], draw(1.0, held_out[name]),
                    e.query_feats, e.classifier, e.n_way)
        results[k].update(references)
    return results


def fidelity_breakdown(model: ClassVAE, params: Params, codes: Tensor, support: Tensor, own: Mapping,
                       from_held_out: Tensor, query_feats: Tensor, classifier: nn.Module,
                       n_way: int) -> dict[str, dict]:
    """Where a way's fidelity goes (:data:`BREAKDOWN`), from its samples ``own`` (a :func:`score_methods`
    entry) under its codes ``codes`` ``[T, C]`` from support ``[T, K, 1, 28, 28]``:

    * ``"support, encoded and decoded"`` — z = the means of q(z | x, c) of the support images, decoded
      under c: how well the decoder draws this class with this code (compare the real support's fidelity);
    * ``"code from held-out images"`` — ``from_held_out`` ``[T, G, 1, 28, 28]``: samples from the same
      noise as ``own``'s (and the same support), under the code the same way finds from the class's
      held-out images: what a better code would be worth. Those images are fidelity's prototypes:
      a measurement, not a method.

    Returns ``{row: {"fidelity", "diversity": [T] arrays}}`` (diversity NaN for one image per task).
    """
    with torch.no_grad():
        coded = {**params, "context": codes}
        redrawn = call(model, coded, "decode", call(model, coded, "encode", support)).cpu()
    rows = {BREAKDOWN[0]: {"fidelity": own["fidelity"], "diversity": own["diversity"]}}
    for name, images in ((BREAKDOWN[1], redrawn), (BREAKDOWN[2], from_held_out)):
        fidelity, diverse = _fidelity_and_diversity(features(classifier, images), query_feats, images, n_way)
        rows[name] = {"fidelity": fidelity, "diversity": diverse}
    return rows
