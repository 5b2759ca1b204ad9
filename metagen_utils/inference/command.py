"""Notebook 05's class-code VAE for the command line: ``python -m metagen_utils train --model set_vae
--method hybrid``, then ``evaluate`` and ``sample`` on it.

It trains as notebook 05 does, with :func:`metagen_utils.inference.set_vae.train` and the settings of
:data:`metagen_utils.profiles.SET_VAE`: the shared stage (the amortised way, ``--pretrain-steps``), then
the method's own steps (``--steps``), so the command line and the notebook give the same weights for the
same seed. The first stage anneals the KL weight over its run, so training goes in one go: there is no
resuming from a checkpoint midway. The trained weights are written as a checkpoint (``OUT/latest/`` and
``OUT/best/``) that ``evaluate`` and ``sample`` load.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor

from . import set_vae as sv
from ..data.episodes import Episode
from ..data.images import ImageSet
from ..errors import ConfigError
from ..training.checkpoint import copy_checkpoint, save_checkpoint
from ..training.loop import MetaModel, TrainConfig, TrainResult


def set_vae(run: Mapping, image_shape: tuple[int, int, int], device: str,
            pretrain_on: ImageSet | None = None, prior_from: ImageSet | None = None) -> MetaModel:
    """The :class:`metagen_utils.training.loop.MetaModel` of notebook 05's class-code VAE, finding c by
    ``run["model_config"]["method"]``; its ``train_fn`` trains it as notebook 05 does. With ``prior_from``
    (background classes), ``generate_fn`` draws z near the support's latents, as notebook 05's section 7
    does (:func:`metagen_utils.inference.set_vae.fit_latent_prior` on those classes); without it,
    z ~ N(0, I)."""
    if tuple(image_shape) != sv.IMAGE_SHAPE:
        raise ConfigError(f"model 'set_vae' draws 1×28×28 gray images; the data has images of shape "
                          f"{tuple(image_shape)} (load it at image size 28, gray)")
    s = run["model_config"]
    method, test_steps = s["method"], s["test_steps"]
    if method not in sv.METHODS:
        raise ConfigError(f"method={method!r} is not valid; expected one of {sv.METHODS}")
    torch.manual_seed(run["seed"])        # as notebook 05 builds each way's model
    module = sv.ClassVAE.from_settings(s).to(device)
    params = sv.init_params(module, s["initial_rate"])

    def generator(use: int) -> torch.Generator:
        return torch.Generator().manual_seed(run["seed"] * 1000 + use)

    def codes(meta: Mapping[str, Tensor], support: Tensor) -> Tensor:
        return sv.contexts(module, dict(meta), method, support.to(device), test_steps, generator(0))

    def loss(meta: Mapping[str, Tensor], episode: Episode) -> Tensor:
        # The query loss at the final KL weight, with fresh noise from the global generator
        support, query = episode.support.to(device), episode.query.to(device)
        noise_s = torch.randn(*support.shape[:2], 1, module.latent_dim).to(device)
        noise_q = torch.randn(*query.shape[:2], 1, module.latent_dim).to(device)
        steps = 0 if method == "amortised" else s["inner_steps"]
        return sv.task_loss(module, dict(meta), method, support, query, noise_s, noise_q, steps, s["kl_weight"][1])

    def evaluate(meta: Mapping[str, Tensor], episode: Episode) -> dict[str, Tensor]:
        nelbo, nll = sv.query_scores(module, dict(meta), codes(meta, episode.support), episode.query.to(device),
                                     s["is_samples"], generator(2))
        return {"nelbo": nelbo.mean(1).cpu(), "nll": nll.mean(1).cpu()}

    fitted: dict[tuple, sv.LatentPrior] = {}

    def prior_for(meta: Mapping[str, Tensor], k_shot: int) -> sv.LatentPrior | None:
        # `sample` calls generate once per class: fit once per K and set of weights. A tensor changed in
        # place (training, loading) has a new version, so a fit for older weights is never reused.
        if prior_from is None:
            return None
        key = (k_shot, *((id(t), t._version) for t in meta.values()))
        if key not in fitted:
            fitted.clear()
            fitted[key] = sv.fit_latent_prior(module, dict(meta), method, prior_from, k_shot, test_steps,
                                              seed=run["seed"])
        return fitted[key]

    def generate(meta: Mapping[str, Tensor], support: Tensor) -> Tensor:
        prior = prior_for(meta, len(support))
        return sv.sample(module, dict(meta), codes(meta, support[None]), len(support), generator(1), prior=prior,
                         support=support[None].to(device))[0].cpu()

    def validate(meta: Mapping[str, Tensor], episode: Episode) -> float:
        return evaluate(meta, episode)["nelbo"].mean().item()

    def train(background: ImageSet, validation: ImageSet | None, run: Mapping, cfg: TrainConfig,
              out_dir: Path | None) -> TrainResult:
        common = dict(k_shots=run["train_k_shots"], n_query=run["n_query"], tasks_per_step=run["tasks_per_step"],
                      lr=cfg.outer_lr, inner_steps=s["inner_steps"])
        shared = sv.train(module, params, "amortised", background, s["shared_steps"], beta=tuple(s["kl_weight"]),
                          seed=cfg.seed, **common)
        losses = sv.train(module, params, method, background, cfg.steps, beta=s["kl_weight"][1],
                          seed=cfg.seed + 1, **common)
        if out_dir is not None:
            config = {"train": asdict(cfg), "run": dict(run)}
            history = {"shared_losses": shared, "train_losses": losses}
            latest = save_checkpoint(Path(out_dir) / "latest", params, step=cfg.steps, config=config,
                                     extra={"history": history}, rng=False)
            copy_checkpoint(latest, Path(out_dir) / "best")
        return TrainResult(params, cfg.steps, losses)

    return MetaModel(meta_params=params, loss_fn=loss, validate_fn=validate, evaluate_fn=evaluate,
                     generate_fn=generate, train_fn=train)
