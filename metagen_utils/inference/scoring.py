"""Notebook 05's evaluation: notebook 04's protocol (:mod:`metagen_utils.generation.evaluation`) for the
class-code VAE's three methods, beside notebook 04's committed model and its support-fitted Gaussian.

Every method sees the same class-tasks and draws the same random numbers, so differences are paired.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..data.images import ImageSet
from ..generation import vae as gen
from ..generation.evaluation import (_class_tasks, _quality, _random_numbers, check_temperatures,
                                     cooler_scores, support_gaussian)
from ..generation.pretrained import TrainedWeights
from ..meta.maml import Params
from .set_vae import ClassVAE, contexts, query_scores, sample

REFERENCES = ("04's model (full profile)", "support-fitted Gaussian")


def score_methods(model: ClassVAE, trained: Mapping[str, Params], steps: int, classifier: nn.Module,
                  images: ImageSet, reference: TrainedWeights, k_shots: Sequence[int] = (1, 5),
                  n_episodes: int = 40, n_way: int = 5, n_query: int = 15, n_samples: int = 10,
                  nll_images: int = 5, is_samples: int = 16, temperatures: Sequence[float] = (),
                  seed: int = 0) -> dict[int, dict[str, dict]]:
    """Each method of ``trained`` (``{method: meta-parameters}``, methods of
    :data:`metagen_utils.inference.set_vae.METHODS`) on ``n_episodes`` ``n_way``-way episodes of ``images``,
    beside :data:`REFERENCES` from notebook 04's committed ``reference`` weights and the real support.

    A class-task's first K images are its support; ``steps`` inner steps refine c (the gradient and
    hybrid methods); ``n_samples`` images are drawn at τ = 1, and again at each τ of ``temperatures``
    from the same noise, scaled (z = τ ε; notebook 04's model: z = m + τ e^{s/2} ε). Its ``n_query``
    held-out images are the
    prototypes of fidelity and the Fréchet distance's reference; the first ``nll_images`` are scored
    (−ELBO and IS-NLL with ``is_samples`` draws, nats per image).

    The class-code VAE runs on its parameters' device; notebook 04's model and the scores on the CPU.
    Returns ``{K: {name: {"fidelity", "diversity", "nelbo", "nll": [T] arrays, "frechet": float,
    "samples": [T, n_samples, 1, 28, 28], "features", "reference_features",
    "temperatures": {τ: {"fidelity", "diversity": [T] arrays}}}}}``, T = n_episodes · n_way.
    """
    check_temperatures(temperatures)
    old = reference.model()
    supports, query, query_feats = _class_tasks(old, classifier, images, max(k_shots), n_episodes, n_way,
                                                n_query, seed)
    results: dict[int, dict[str, dict]] = {}
    for k in k_shots:
        support, rng = supports[:, :k], _random_numbers(seed, k)
        results[k] = {}
        for method, params in trained.items():
            device = params["context"].device      # the class-code VAE's; notebook 04's model stays on the CPU
            codes = contexts(model, params, method, support.to(device), steps, rng(0))
            nelbo, nll = query_scores(model, params, codes, query[:, :nll_images].to(device), is_samples, rng(2))
            def draw(tau: float, params: Params = params, codes: Tensor = codes) -> Tensor:
                return sample(model, params, codes, n_samples, rng(1), temperature=tau).cpu()
            results[k][method] = {**_quality(draw(1.0), query_feats, classifier, n_way),
                                  "nelbo": nelbo.mean(1).cpu().numpy(), "nll": nll.mean(1).cpu().numpy(),
                                  "temperatures": cooler_scores(draw, temperatures, query_feats, classifier, n_way)}
        cfg = reference.meta_config()
        old_ways = {REFERENCES[0]: (reference.meta, gen.adapt(old, reference.meta, support, cfg, rng(0),
                                                              steps=reference.test_steps()[k])),
                    REFERENCES[1]: (reference.joint, support_gaussian(old, reference.joint, support,
                                                                      reference.spread))}
        for name, (params, adapted) in old_ways.items():
            nelbo, nll = gen.query_scores(old, params, adapted, query[:, :nll_images], is_samples, rng(2))
            def draw(tau: float, params: Params = params, adapted: Params = adapted) -> Tensor:
                return gen.sample(old, params, adapted, n_samples, rng(1), temperature=tau)
            results[k][name] = {**_quality(draw(1.0), query_feats, classifier, n_way),
                                "nelbo": nelbo.mean(1).numpy(), "nll": nll.mean(1).numpy(),
                                "temperatures": cooler_scores(draw, temperatures, query_feats, classifier, n_way)}
        nothing = torch.full((len(support),), math.nan).numpy()
        results[k]["real support"] = {**_quality(support, query_feats, classifier, n_way), "nelbo": nothing,
                                      "nll": nothing, "temperatures": {}}
    return results

