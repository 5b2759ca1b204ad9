"""A small MAML demo for the command line (``--model conv_generator``): a convolutional generator that
adapts to a class from K images, trained by the same outer loop as notebook 04's model."""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from ..data.episodes import Episode
from ..data.images import ImageSet
from ..meta.maml import MetaConfig, TaskBatch, init_meta_params, inner_loop, meta_gradient, meta_loss
from ..models import ConvGenerator
from .loop import MetaModel, Params


def conv_generator(run: Mapping, image_shape: tuple[int, int, int], device: str,
                   pretrain_on: ImageSet | None = None) -> MetaModel:
    """The demo: :class:`ConvGenerator` meta-learned with MAML to map fixed latent codes to a class's images.

    Slot j of every task has the same latent code z_j ``[latent_dim]`` (drawn once from the run's seed):
    support image j is generated from z_j and query image j from z_{K+j}, so adapting to K images of a
    new class teaches the generator that class, and the query codes then draw new images of it. It has
    no pretraining stage (``pretrain_on`` is ignored).
    """
    channels, size, _ = image_shape
    settings = run["model_config"]
    k, q = run["k_shot"], run["n_query"]
    module = ConvGenerator(settings["latent_dim"], channels, size).to(device)
    meta_cfg = MetaConfig(settings["algorithm"], settings["inner_steps"], settings["inner_lr"])
    generator = torch.Generator().manual_seed(run["seed"])
    latents = torch.randn(k + q, settings["latent_dim"], generator=generator).to(device)

    def batch(episode: Episode) -> TaskBatch:
        t = episode.num_tasks
        return TaskBatch(latents[:k].expand(t, k, -1), episode.support.to(device),
                         latents[k:].expand(t, q, -1), episode.query.to(device))

    def adapted(params: Params, support: Tensor) -> Params:
        return inner_loop(module, params, latents[:k], support.to(device), F.mse_loss, meta_cfg.inner_steps,
                          meta_cfg.inner_lr, create_graph=False)

    def generate(params: Params, support: Tensor) -> Tensor:
        fast = adapted(params, support)
        with torch.no_grad():
            return functional_call(module, fast, (latents[k:],))

    def evaluate(params: Params, episode: Episode) -> dict[str, Tensor]:
        with torch.no_grad():
            before = F.mse_loss(functional_call(module, params, (latents[k:],)).expand_as(episode.query),
                                episode.query.to(device), reduction="none").flatten(1).mean(1)
        after = torch.stack([F.mse_loss(generate(params, s), qy.to(device))
                             for s, qy in zip(episode.support, episode.query)])
        # PSNR of images in [0, 1]; the floor keeps a perfect reconstruction finite (100 dB).
        return {f"{metric}_{when}": value.cpu() for when, mse in (("before", before), ("after", after))
                for metric, value in (("mse", mse), ("psnr_db", -10 * torch.log10(mse.clamp_min(1e-10))))}

    return MetaModel(
        meta_params=init_meta_params(module, meta_cfg),
        loss_fn=lambda params, episode: meta_gradient(module, params, batch(episode), meta_cfg, F.mse_loss),
        validate_fn=lambda params, episode: meta_loss(module, params, batch(episode), meta_cfg,
                                                      F.mse_loss).item(),
        evaluate_fn=evaluate, generate_fn=generate)
