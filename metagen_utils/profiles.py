"""The two profiles, in one place: every difference between ``cpu`` (the default, sized for 2 cores) and
``full`` (full scale: a GPU if there is one, else a long CPU run).

The command line and the notebooks read their sizes, steps and widths from here.
"""
from __future__ import annotations

from .errors import ConfigError

PROFILES = ("cpu", "full")

# Notebook 04's model and adaptation; the cpu profile is the notebook's training, full its full profile
# (twice the channels, three residual blocks in the decoder, four times the steps). class_steps: steps of
# per-class contexts between the joint VAE and meta-training (generation.train_class_contexts); none by
# default, as in the notebook (the README gives what they buy).
# test_steps: inner steps when evaluating, more than the 3 trained with, which Meta-SGD's per-parameter
# rates allow (in notebook 04's calibration: ≈ 3 nats of K = 1 NLL for +0.06 fidelity, both gained at K = 5).
# initial_rates: decoder.up's learned rates start at 1e-4, not inner_lr: a decoder layer's gradient of a
# pixel-sum likelihood is hundreds of times the context's, and one rate for both either leaves c still or
# makes the layer diverge.
META_VAE_MODEL = {"latent_dim": 16, "context_dim": 16, "width": 16, "blocks": 0, "joint_steps": 1200,
                  "joint_lr": 2e-3, "class_steps": 0, "inner_steps": 3, "inner_lr": 0.5, "test_steps": 6,
                  "adapt": ["context", "decoder.up"], "initial_rates": {"decoder.up": 1e-4}, "is_samples": 16}
# Meta-training alternates K = 1 and K = 5 tasks (train_k_shots); validation and the command line's
# evaluate use K = 5 (k_shot). lr_scale: decoder.up's learned rates start at 1e-4, and Adam moves every
# tensor by about the outer rate per step whatever its size: at the full outer rate they grew a
# thousandfold within 70 steps, until one K = 1 task's inner steps overshot (a meta-loss of 1.9e5 nats at
# step 72 of the cpu profile; at half the rate, NaN there). At 0.3 × the outer rate the run has no spike
# and the same validation −ELBO (154.96 against 154.89 nats; 0.1 gave 155.32).
META_VAE = {
    "cpu": {"k_shot": 5, "train_k_shots": [1, 5], "n_query": 5, "tasks_per_step": 16, "val_tasks": 64,
            "eval_tasks": 200, "model_config": META_VAE_MODEL,
            "train": {"steps": 400, "outer_lr": 4e-3, "warmup_steps": 40, "max_grad_norm": 100.0,
                      "checkpoint_every": 100, "validate_every": 100, "lr_scale": {"inner_lr.decoder": 0.3}}},
    "full": {"k_shot": 5, "train_k_shots": [1, 5], "n_query": 5, "tasks_per_step": 16, "val_tasks": 128,
             "eval_tasks": 600,
             "model_config": {**META_VAE_MODEL, "width": 32, "blocks": 3, "joint_steps": 4800, "is_samples": 64},
             "train": {"steps": 1600, "outer_lr": 4e-3, "warmup_steps": 160, "max_grad_norm": 100.0,
                       "checkpoint_every": 200, "validate_every": 200, "lr_scale": {"inner_lr.decoder": 0.3}}},
}

# inner_lr is large because a per-pixel mean squared error has small gradients: in a 40-step cpu run on the
# glyphs, rate 0.5 barely adapted (query MSE 0.119 → 0.119) while 5.0 did (0.26 → 0.092).
CONV_GENERATOR = {
    "cpu": {"k_shot": 5, "n_query": 5, "tasks_per_step": 8, "val_tasks": 32, "eval_tasks": 100,
            "model_config": {"latent_dim": 32, "algorithm": "maml", "inner_steps": 1, "inner_lr": 5.0},
            "train": {"steps": 300, "outer_lr": 1e-3, "warmup_steps": 20, "checkpoint_every": 50,
                      "validate_every": 50}},
    "full": {"k_shot": 5, "n_query": 5, "tasks_per_step": 32, "val_tasks": 128, "eval_tasks": 600,
             "model_config": {"latent_dim": 64, "algorithm": "maml", "inner_steps": 3, "inner_lr": 2.0},
             "train": {"steps": 5000, "outer_lr": 1e-3, "warmup_steps": 200, "checkpoint_every": 250,
                       "validate_every": 250}},
}

# Notebook 05's class-code VAE (metagen_utils.inference.set_vae). A shared first stage trains the
# amortised way (shared_steps; a step without inner steps costs under half a hybrid step); then
# each way trains `steps` more from a copy of it. Chosen on the validation alphabets (docs/results.md),
# near notebook 05's time budget (3 minutes asked): a longer first stage paid more than a longer second
# (the hybrid's fidelity, K = 1 / 5, one run each: 3,000 + 700 steps 0.757 / 0.841, 4,000 + 500
# 0.769 / 0.873, 5,000 + 400 0.781 / 0.851; 1,000 steps of each way alone, no shared stage, about
# 0.73 / 0.82).
# initial_rate starts the inner rates, which stage 1 does not use: at 0.1, the first inner steps from
# the stage-1 model threw a few codes far off (one query loss of 8·10⁴ nats at stage 2's second step);
# at 0.03 no stage-2 loss rose past 1.3 times the first.
# blocks: residual blocks in the decoder (set_vae.Decoder). On the validation scripts three of them, at
# the cpu profile's schedule, lowered the hybrid's IS-NLL by 4.3 / 4.9 nats (K = 1 / 5) and raised its
# fidelity (+0.036 ± 0.028 / +0.002 ± 0.021) and diversity (7.32 → 7.73 at K = 1), at 1.5 times the
# training time: the full profile has them; the cpu profile, held to notebook 05's time, does not.
SET_VAE = {
    "cpu": {"latent_dim": 16, "context_dim": 32, "width": 16, "hidden": 128, "blocks": 0,
            "shared_steps": 4000, "steps": 400,
            "tasks_per_step": 16,
            "n_query": 5, "lr": 2e-3, "inner_steps": 2, "test_steps": 4, "initial_rate": 0.03,
            "kl_weight": (8.0, 2.0, 0.6)},
    "full": {"latent_dim": 16, "context_dim": 32, "width": 32, "hidden": 256, "blocks": 3,
             "shared_steps": 16000, "steps": 1600,
             "tasks_per_step": 16,
             "n_query": 5, "lr": 2e-3, "inner_steps": 2, "test_steps": 4, "initial_rate": 0.03,
             "kl_weight": (8.0, 2.0, 0.6)},
}

# The command line's set_vae (metagen_utils.inference.command): SET_VAE's settings in the run format
# the other models use; --method picks the way to find c (notebook 05 trains all three).
SET_VAE_RUN = {
    profile: {"k_shot": 5, "train_k_shots": [1, 5], "n_query": s["n_query"], "tasks_per_step": s["tasks_per_step"],
              "val_tasks": 64, "eval_tasks": 200,
              "model_config": {**{k: v for k, v in s.items() if k not in ("steps", "lr", "tasks_per_step", "n_query")},
                               "kl_weight": list(s["kl_weight"]), "method": "hybrid", "is_samples": 16},
              "train": {"steps": s["steps"], "outer_lr": s["lr"], "warmup_steps": max(1, s["steps"] // 10),
                        "max_grad_norm": 100.0, "checkpoint_every": s["steps"], "validate_every": s["steps"]}}
    for profile, s in SET_VAE.items()}

# Notebooks 02–04: the full profile runs this many times the cpu profile's training steps (and notebook 02
# this many times its evaluation tasks).
STEP_SCALE = {"cpu": 1, "full": 4}
# Notebook 04's inner steps at test time, by profile: a number, or one per K. At the full profile, from one
# image 6 steps over-fit its larger decoder layer (held-out likelihood falls behind the fine-tuned
# baselines), so K = 1 takes 3.
NOTEBOOK_04_TEST_STEPS = {"cpu": META_VAE["cpu"]["model_config"]["test_steps"], "full": {1: 3, 5: 6}}

# The models the command line trains, by name: each one's settings at each profile.
BY_MODEL = {"meta_vae": META_VAE, "conv_generator": CONV_GENERATOR, "set_vae": SET_VAE_RUN}


def warmup_for(train: dict, steps: int) -> int:
    """Warm-up steps for a run of ``steps`` outer steps in place of the profile's ``train["steps"]``.

    A longer run keeps the profile's fraction of warm-up. A shorter one keeps the profile's warm-up
    length, even past its end, so that no step's rate exceeds the profile's at that step. Adam's first
    steps move every tensor by about the rate whatever its gradient: at the full rate, the first step
    multiplied the decoder's learned inner rates (1e-4) by 25, and the next inner loop diverged.

    >>> [warmup_for({"steps": 400, "warmup_steps": 40}, n) for n in (2, 400, 800)]
    [40, 40, 80]
    """
    return max(train["warmup_steps"], train["warmup_steps"] * steps // train["steps"])


def run_settings(profile: str, model: str, data: str, seed: int, steps: int | None = None,
                 tasks_per_step: int | None = None, pretrain_steps: int | None = None,
                 class_steps: int | None = None, method: str | None = None) -> tuple[dict, dict]:
    """(run config saved in checkpoints, the outer loop's settings for ``TrainConfig(**settings)``) for a
    profile and the command-line overrides."""
    if profile not in PROFILES:
        raise ConfigError(f"profile={profile!r} is not valid; expected one of {sorted(PROFILES)}")
    if model not in BY_MODEL:
        raise ConfigError(f"model={model!r} is not valid; expected one of {sorted(BY_MODEL)}")
    base = BY_MODEL[model][profile]
    run = {key: value for key, value in base.items() if key != "train"}
    run.update(profile=profile, model=model, data=data, seed=seed, image_size=28)
    if tasks_per_step is not None:
        run["tasks_per_step"] = tasks_per_step
    first_stage = "shared_steps" if "shared_steps" in run["model_config"] else "joint_steps"
    for name, value, key in (("pretrain_steps", pretrain_steps, first_stage),
                             ("class_steps", class_steps, "class_steps")):
        if value is not None:
            if key not in run["model_config"]:
                raise ConfigError(f"{name}={value}: model {model!r} has no pretraining stage")
            run["model_config"] = {**run["model_config"], key: value}
    if method is not None:
        if "method" not in run["model_config"]:
            raise ConfigError(f"method={method!r}: model {model!r} has one way to adapt; --method is for set_vae")
        run["model_config"] = {**run["model_config"], "method": method}
    settings = {**base["train"], "seed": seed}
    if steps is not None:
        settings.update(steps=steps, warmup_steps=warmup_for(base["train"], steps))
    return run, settings


