"""Notebook 04's model for the notebook, the command line and torchrun
(``python -m metagen_utils train --model meta_vae``).

The conditional-prior VAE of :mod:`metagen_utils.generation.vae`: the joint (class-agnostic) VAE is trained
first (:func:`generation.train_joint`), then the context and one decoder layer are meta-learned with
Meta-SGD by the outer loop of :mod:`metagen_utils.training.loop` (AdamW, warm-up and cosine, clipping,
validation with the best step kept, checkpoints, exact resume, DDP), with K = 1 and K = 5 tasks in turn.
Notebook 04 builds its model with :func:`meta_model` and trains it with :func:`metagen_utils.training.loop.fit`,
the functions the command line uses, in the configuration :data:`PROFILES` gives both. Adaptation,
sampling and scoring are :func:`generation.adapt`, :func:`generation.sample` and
:func:`generation.query_scores`.

It runs on any device, in float32 (or under bfloat16 autocast where asked): random numbers are drawn on
the CPU and moved to the device, so one seed gives one run wherever it goes. Under torchrun every rank
trains the same joint VAE from the same seed before meta-training splits the tasks.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from . import vae as gen
from ..data.images import ImageSet
from ..errors import ConfigError
from ..meta.maml import MetaConfig, init_meta_params, meta_gradient, meta_loss
from ..data.episodes import Episode
from ..training.loop import MetaModel

def meta_config(settings: Mapping) -> MetaConfig:
    """Meta-SGD on the context and the adapted decoder layers, as in notebook 04."""
    return MetaConfig("metasgd", inner_steps=settings["inner_steps"], inner_lr=settings["inner_lr"],
                      adapt=tuple(settings["adapt"]))


def meta_vae(run: Mapping, image_shape: tuple[int, int, int], device: str,
             pretrain_on: ImageSet | None = None):
    """The :class:`metagen_utils.training.loop.MetaModel` of notebook 04's model, for the command line. With
    ``pretrain_on`` (a new run) the joint VAE is trained on it first; without (resuming, evaluating,
    sampling) the weights come from the checkpoint."""
    if tuple(image_shape) != gen.IMAGE_SHAPE:
        raise ConfigError(f"model 'meta_vae' draws 1×28×28 gray images; the data has images of shape "
                          f"{tuple(image_shape)} (load it at image size 28, gray)")
    settings = run["model_config"]
    torch.manual_seed(run["seed"])
    module = gen.ConditionalVAE(settings["latent_dim"], settings["context_dim"], settings["width"],
                                settings.get("blocks", 0)).to(device)     # runs saved before blocks existed: 0
    if pretrain_on is not None:
        gen.train_joint(module, pretrain_on, steps=settings["joint_steps"], lr=settings["joint_lr"],
                        seed=run["seed"])
        if settings.get("class_steps", 0):      # runs saved before class contexts existed: none
            # The notebook's 16 classes × 4 images a step, or what a small data set has
            gen.train_class_contexts(module, pretrain_on, steps=settings["class_steps"], seed=run["seed"],
                                     classes_per_step=min(16, pretrain_on.num_classes),
                                     images_per_class=min(4, int(pretrain_on.class_counts().min())))
    return meta_model(module, settings, run["seed"], device)


def meta_model(module: gen.ConditionalVAE, settings: Mapping, seed: int, device: str,
               amp_dtype: torch.dtype | None = None):
    """Meta-SGD on ``module`` as ``settings`` (a profile's ``model_config``) describe it, from the module's
    current weights (the joint VAE): a :class:`metagen_utils.training.loop.MetaModel` whose meta-parameters are
    the module's tensors plus the learned inner rates, started at ``settings["initial_rates"]``.
    ``amp_dtype`` (bfloat16 on CUDA) runs each meta-gradient under ``torch.autocast``."""
    cfg = meta_config(settings)
    params = gen.set_initial_rates(init_meta_params(module, cfg), dict(settings["initial_rates"]))

    def batch(episode: Episode):
        # Noise from the global generator, which the training loop seeds from (seed, step, rank).
        return gen.task_batch(episode.support.to(device), episode.query.to(device), module.latent_dim,
                              generator=None)

    def loss(meta: Mapping[str, Tensor], episode: Episode):
        with torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp_dtype is not None):
            return meta_gradient(module, meta, batch(episode), cfg, gen.mean_loss)

    def generator(use: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed * 1000 + use)

    def evaluate(meta: Mapping[str, Tensor], episode: Episode) -> dict[str, Tensor]:
        support, query = episode.support.to(device), episode.query.to(device)
        adapted = gen.adapt(module, dict(meta), support, cfg, generator(0), steps=settings["test_steps"])
        out = {}
        for when, adapted_params in (("before", {}), ("after", adapted)):
            nelbo, nll = gen.query_scores(module, dict(meta), adapted_params, query, settings["is_samples"],
                                          generator(2))
            out[f"nelbo_{when}"], out[f"nll_{when}"] = nelbo.mean(1).cpu(), nll.mean(1).cpu()
        return out

    def generate(meta: Mapping[str, Tensor], support: Tensor) -> Tensor:
        samples, _ = gen.adapt_and_sample(module, dict(meta), support[None].to(device), cfg, len(support),
                                          generator(1), steps=settings["test_steps"])
        return samples[0].cpu()

    def validate(meta: Mapping[str, Tensor], episode: Episode) -> float:
        # Detached: the value needs no graph through the inner gradients (the same numbers, less work).
        frozen = {n: t.detach() for n, t in meta.items()}
        return meta_loss(module, frozen, batch(episode), cfg, gen.mean_loss).item()

    return MetaModel(meta_params=params, loss_fn=loss, validate_fn=validate, evaluate_fn=evaluate,
                     generate_fn=generate)
