"""Notebook 04's model as the notebook and the command line both train it: :func:`meta_vae.meta_model`
trained by :func:`train.fit` (K = 1 and K = 5 tasks in turn, validation, the best step kept)."""
from __future__ import annotations

import pytest
import torch

from metagen_utils.generation import vae as gen
from metagen_utils.generation import meta_vae
from metagen_utils import profiles
from metagen_utils.training import loop
from metagen_utils.training.loop import TrainConfig, fit

SETTINGS = {"inner_steps": 1, "inner_lr": 0.5, "adapt": ["context", "decoder.up"],
            "initial_rates": {"decoder.up": 1e-4}, "test_steps": 2, "is_samples": 2}
RUN = {"k_shot": 3, "train_k_shots": [1, 3], "n_query": 2, "tasks_per_step": 2, "val_tasks": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


def trained(glyph_set, seed: int = 5):
    background = glyph_set.split("background").select_classes(list(range(20)))
    validation = glyph_set.split("validation").select_classes(list(range(6)))
    torch.manual_seed(0)
    model = gen.ConditionalVAE(latent_dim=4, context_dim=4, width=4)
    joint = gen.train_joint(model, background, steps=3, batch_size=8, seed=seed)
    learner = meta_vae.meta_model(model, SETTINGS, seed=seed, device="cpu")
    shots = []
    loss_fn = learner.loss_fn
    learner.loss_fn = lambda meta, episode: shots.append(episode.support.shape[1]) or loss_fn(meta, episode)
    cfg = TrainConfig(steps=4, outer_lr=4e-3, max_grad_norm=100.0, validate_every=2, seed=seed)
    result = fit(learner, background, validation, RUN, cfg, progress=False)
    support = torch.from_numpy(validation.images[:3])
    return joint, learner, result, shots, learner.generate_fn(result.best_params, support)


def test_meta_training_takes_k_1_and_k_5_in_turn_validates_and_keeps_the_best_step(glyph_set):
    joint, learner, result, shots, samples = trained(glyph_set)
    assert shots == [3, 1, 3, 1]                      # step s uses train_k_shots[s % 2]
    assert [step for step, _ in result.validation] == [2, 4]
    assert result.best_step in (2, 4) and result.best_validation == min(v for _, v in result.validation)
    assert not torch.equal(joint["encoder.fc.weight"], result.params["encoder.fc.weight"])
    assert samples.shape == (3, 1, 28, 28) and ((samples >= 0) & (samples <= 1)).all()


def test_the_rates_start_where_the_settings_say():
    learner = meta_vae.meta_model(gen.ConditionalVAE(4, 4, 4), SETTINGS, seed=0, device="cpu")
    rates = {n: t for n, t in learner.meta_params.items() if n.startswith("inner_lr.")}
    assert set(rates) == {"inner_lr.context", "inner_lr.decoder.up.weight", "inner_lr.decoder.up.bias"}
    assert (rates["inner_lr.context"] == 0.5).all() and (rates["inner_lr.decoder.up.weight"] == 1e-4).all()


def test_the_same_seed_gives_the_same_training_and_samples(glyph_set):
    (joint_a, _, a, _, samples_a), (joint_b, _, b, _, samples_b) = trained(glyph_set), trained(glyph_set)
    assert a.train_losses == b.train_losses and a.validation == b.validation
    for name in a.params:
        assert torch.equal(a.params[name], b.params[name]), name
        assert torch.equal(a.best_params[name], b.best_params[name]), name
    assert all(torch.equal(joint_a[n], joint_b[n]) for n in joint_a)
    assert torch.equal(samples_a, samples_b)
    _, _, other, _, _ = trained(glyph_set, seed=6)
    assert other.train_losses != a.train_losses


def test_validation_gives_the_meta_loss_without_its_graph(glyph_set):
    from metagen_utils.meta.maml import meta_loss
    from metagen_utils.training.loop import episode_fn

    validation = glyph_set.split("validation").select_classes(list(range(6)))
    model = gen.ConditionalVAE(4, 4, 4)
    learner = meta_vae.meta_model(model, SETTINGS, seed=0, device="cpu")
    episode = episode_fn(validation, 3, 2, tasks_per_step=3, seed=0)(0)
    torch.manual_seed(1)
    value = learner.validate_fn(learner.meta_params, episode)
    torch.manual_seed(1)          # the same noise: the batch draws it from the global generator
    batch = gen.task_batch(episode.support, episode.query, 4, generator=None)
    loss = meta_loss(model, learner.meta_params, batch, meta_vae.meta_config(SETTINGS), gen.mean_loss)
    assert loss.requires_grad and value == loss.item()


@pytest.mark.slow
def test_a_short_run_at_the_cpu_settings_on_a_small_set_keeps_every_meta_loss_near_the_first(glyph_set):
    # 28 background classes, as a folder of one's own gives after hold-out; the joint VAE at its cpu length.
    # A shortened run once warmed up in proportion (2 steps of 20), and its third step's inner loop diverged.
    background = glyph_set.split("evaluation").select_classes(list(range(28)))
    sizes = profiles.META_VAE["cpu"]["model_config"]
    torch.manual_seed(0)
    model = gen.ConditionalVAE(sizes["latent_dim"], sizes["context_dim"], sizes["width"], sizes["blocks"])
    gen.train_joint(model, background, steps=sizes["joint_steps"], lr=sizes["joint_lr"], seed=0)
    run, cfg = loop.run_settings("cpu", "meta_vae", "small", 0, steps=20)
    learner = meta_vae.meta_model(model, run["model_config"], seed=0, device="cpu")
    result = fit(learner, background, None, run, cfg, progress=False)
    first = result.train_losses[0]
    assert len(result.train_losses) == 20
    assert all(0 < loss < 1.5 * first for loss in result.train_losses), result.train_losses
