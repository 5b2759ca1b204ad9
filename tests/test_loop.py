"""The meta-training loop: schedule, per-step determinism, exact resume, non-finite losses, best/latest
checkpoints, and data parallelism over tasks (2 gloo processes give what 1 process gives)."""
from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from metagen_utils import profiles
from metagen_utils.kernels import clip_grad_norm
from metagen_utils.training import loop as train_module
from metagen_utils.training.checkpoint import load_checkpoint
from metagen_utils.data.images import ImageSet
from metagen_utils.errors import CheckpointError, ConfigError, MetaLearningError
from metagen_utils.data.episodes import Episode
from metagen_utils.training.loop import TrainConfig, episode_fn, rate_groups, shard, train
from metagen_utils.training.schedule import warmup_cosine


def image_set(classes: int = 6, per_class: int = 5, size: int = 4) -> ImageSet:
    rng = np.random.default_rng(0)
    images = rng.random((classes * per_class, 1, size, size)).astype(np.float32)
    return ImageSet(images, np.repeat(np.arange(classes), per_class), tuple(f"c{i}" for i in range(classes)),
                    ("A",) * classes, ("background",) * classes, name="tiny")


def linear_params() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(16, generator=g).requires_grad_(), "b": torch.zeros(1, requires_grad=True)}


def noisy_loss(params: dict[str, torch.Tensor], episode: Episode) -> torch.Tensor:
    """Predict each task's mean query pixel from its support pixels, plus noise drawn from the global
    torch RNG — so only a resume that gets the randomness right reproduces the run."""
    x = episode.support.flatten(2)                     # [tasks, K, 16]
    target = episode.query.flatten(1).mean(1)          # [tasks]
    prediction = (x @ params["w"] + params["b"]).mean(1)
    return ((prediction - target) ** 2).mean() + 0.01 * torch.randn(())


def validation(params: dict[str, torch.Tensor]) -> float:
    return float((params["w"].detach() - 0.1).square().sum())


CFG = TrainConfig(steps=15, outer_lr=0.05, warmup_steps=2, max_grad_norm=0.5, checkpoint_every=7,
                  validate_every=5, keep_last=2)


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("field,value,message", [
    ("steps", 0, "steps=0 is not valid; expected an integer ≥ 1"),
    ("outer_lr", float("nan"), "outer_lr=nan is not valid; expected a finite number ≥ 0"),
    ("warmup_steps", -1, "warmup_steps=-1 is not valid; expected an integer ≥ 0"),
    ("lr_scale", {"inner_lr.": 0}, "lr_scale={'inner_lr.': 0} is not valid; expected {name prefix: factor > 0}"),
])
def test_train_config_rejects_bad_values_naming_them(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        TrainConfig(**{field: value})


def test_each_steps_episode_is_a_function_of_seed_and_step_alone():
    sample = episode_fn(image_set(), k_shot=2, n_query=2, tasks_per_step=4, seed=3)
    later_first = sample(8)
    sample(1), sample(2)
    assert torch.equal(sample(8).support_index, later_first.support_index)
    assert not torch.equal(sample(9).support_index, later_first.support_index)
    other_seed = episode_fn(image_set(), k_shot=2, n_query=2, tasks_per_step=4, seed=4)
    assert not torch.equal(other_seed(8).support_index, later_first.support_index)


def test_a_list_of_k_shot_is_taken_in_turn_by_step():
    sample = episode_fn(image_set(), k_shot=[1, 3], n_query=2, tasks_per_step=4, seed=3)
    assert [sample(step).support.shape[1] for step in range(4)] == [1, 3, 1, 3]
    assert sample(5).query.shape[1] == 2
    assert torch.equal(sample(7).support_index, sample(7).support_index)       # still a function of the step
    with pytest.raises(ConfigError, match=r"k_shot=\[\]"):
        episode_fn(image_set(), k_shot=[], n_query=2, tasks_per_step=4, seed=3)


def test_shards_put_every_task_on_exactly_one_rank_even_when_uneven():
    episode = episode_fn(image_set(), 2, 2, tasks_per_step=5, seed=0)(1)
    shards = [shard(episode, rank, 3) for rank in range(3)]
    assert [s.num_tasks for s in shards] == [2, 2, 1]
    rows = torch.cat([s.support_index for s in shards])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, episode.support_index.tolist()))


def test_train_equals_a_plain_adamw_loop_with_the_schedule_and_clipping():
    sample = episode_fn(image_set(), 2, 2, tasks_per_step=3, seed=0)
    def loss(params, episode):    # deterministic, so the hand-written loop can reproduce it
        return noisy_loss(params, episode) - 0.01 * torch.randn(())
    cfg = TrainConfig(steps=6, outer_lr=0.05, warmup_steps=2, max_grad_norm=0.1, weight_decay=0.01)
    result = train(linear_params(), loss, sample, cfg, progress=False)
    params = linear_params()
    optimizer = torch.optim.AdamW(list(params.values()), lr=cfg.outer_lr, weight_decay=cfg.weight_decay,
                                  fused=True)
    for step in range(1, cfg.steps + 1):
        optimizer.zero_grad()
        loss(params, sample(step)).backward()
        clip_grad_norm(params.values(), cfg.max_grad_norm)
        optimizer.param_groups[0]["lr"] = cfg.outer_lr * warmup_cosine(step, cfg.steps, cfg.warmup_steps)
        optimizer.step()
    for name in params:
        assert torch.equal(result.params[name], params[name])


def test_a_prefix_in_lr_scale_trains_those_parameters_at_that_multiple_of_the_rate():
    sample = episode_fn(image_set(), 2, 2, tasks_per_step=3, seed=0)
    def loss(params, episode):
        return noisy_loss(params, episode) - 0.01 * torch.randn(())
    cfg = TrainConfig(steps=5, outer_lr=0.05, warmup_steps=2, lr_scale={"b": 0.25})
    result = train(linear_params(), loss, sample, cfg, progress=False)
    params = linear_params()
    optimizer = torch.optim.AdamW([{"params": [params["w"]]}, {"params": [params["b"]]}], lr=cfg.outer_lr,
                                  weight_decay=0.0, fused=True)
    for step in range(1, cfg.steps + 1):
        optimizer.zero_grad()
        loss(params, sample(step)).backward()
        clip_grad_norm(params.values(), cfg.max_grad_norm)
        rate = cfg.outer_lr * warmup_cosine(step, cfg.steps, cfg.warmup_steps)
        optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"] = 1.0 * rate, 0.25 * rate
        optimizer.step()
    for name in params:
        assert torch.equal(result.params[name], params[name]), name


def test_the_longest_matching_prefix_sets_a_parameters_rate():
    params = {"inner_lr.decoder.up": torch.zeros(1), "inner_lr.context": torch.zeros(1), "w": torch.zeros(1)}
    groups = rate_groups(list(params), params, {"inner_lr.": 0.5, "inner_lr.decoder": 0.1})
    assert [(g["scale"], len(g["params"])) for g in groups] == [(0.1, 1), (0.5, 1), (1.0, 1)]


def test_a_loss_fn_returning_loss_and_direction_is_stepped_along_that_direction():
    sample = episode_fn(image_set(), 2, 2, tasks_per_step=2, seed=0)
    direction = {"w": torch.ones(16), "b": -torch.ones(1)}
    cfg = TrainConfig(steps=1, outer_lr=0.1, max_grad_norm=None)
    result = train(linear_params(), lambda p, e: (torch.tensor(1.0), direction), sample, cfg, progress=False)
    moved = {n: result.params[n].detach() - linear_params()[n].detach() for n in direction}
    assert (moved["w"] < 0).all() and (moved["b"] > 0).all()   # AdamW's first step: −lr · sign(direction)


def interrupted_then_resumed(out: Path) -> train_module.TrainResult:
    sample = episode_fn(image_set(), 2, 2, tasks_per_step=3, seed=0)
    def stops_at_eight(step):
        if step == 8:
            raise Interrupted
        return sample(step)
    with pytest.raises(Interrupted):
        train(linear_params(), noisy_loss, stops_at_eight, CFG, validation, out, progress=False)
    assert load_checkpoint(out / "latest").step == 7
    return train(linear_params(), noisy_loss, sample, CFG, validation, out, resume=True, progress=False)


def test_resuming_after_an_interruption_gives_bit_identical_parameters_and_history(tmp_path):
    sample = episode_fn(image_set(), 2, 2, tasks_per_step=3, seed=0)
    straight = train(linear_params(), noisy_loss, sample, CFG, validation, tmp_path / "straight", progress=False)
    resumed = interrupted_then_resumed(tmp_path / "resumed")
    for name in straight.params:
        assert torch.equal(resumed.params[name], straight.params[name]), name
    assert resumed.train_losses == straight.train_losses and len(resumed.train_losses) == 15
    assert resumed.validation == straight.validation
    assert (resumed.best_step, resumed.best_validation) == (straight.best_step, straight.best_validation)
    for name in straight.best_params:     # the best step came before the interruption: read back from best/
        assert torch.equal(resumed.best_params[name], straight.best_params[name]), name


def test_best_holds_the_lowest_validation_and_only_the_last_step_folders_are_kept(tmp_path):
    sample = episode_fn(image_set(), 2, 2, tasks_per_step=3, seed=0)
    result = train(linear_params(), noisy_loss, sample, CFG, validation, tmp_path, progress=False)
    steps, losses = zip(*result.validation)
    assert steps == (5, 10, 15)
    best = load_checkpoint(tmp_path / "best")
    assert best.step == result.best_step == steps[int(np.argmin(losses))]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "latest", "step_000014", "step_000015"]
    latest = load_checkpoint(tmp_path / "latest")
    assert latest.step == 15 and torch.equal(latest.weights["w"], result.params["w"].detach())
    assert torch.equal(result.best_params["w"], best.weights["w"])


def test_the_best_parameters_are_kept_in_memory_without_an_output_folder():
    sample = episode_fn(image_set(), 2, 2, tasks_per_step=3, seed=0)
    scores = iter([2.0, 1.0, 3.0])     # validation at steps 5, 10, 15: the middle one is best
    seen = {}
    def validate(params):
        seen[len(seen)] = params["w"].detach().clone()
        return next(scores)
    result = train(linear_params(), noisy_loss, sample, CFG, validate, progress=False)
    assert result.best_step == 10 and result.best_validation == 1.0
    assert torch.equal(result.best_params["w"], seen[1])
    assert not torch.equal(result.best_params["w"], result.params["w"].detach())   # a copy, not the live tensor
    assert train(linear_params(), noisy_loss, sample, CFG, progress=False).best_params is None


def test_resuming_with_another_config_names_the_setting(tmp_path):
    sample = episode_fn(image_set(), 2, 2, tasks_per_step=3, seed=0)
    train(linear_params(), noisy_loss, sample, TrainConfig(steps=2, checkpoint_every=1), None, tmp_path,
          progress=False)
    with pytest.raises(CheckpointError, match=r"state\.json: .* train\.outer_lr: checkpoint 0\.001, now 0\.002"):
        train(linear_params(), noisy_loss, sample, TrainConfig(steps=2, checkpoint_every=1, outer_lr=0.002),
              None, tmp_path, resume=True, progress=False)


def test_resume_without_a_checkpoint_and_a_fresh_run_over_one_are_errors(tmp_path):
    sample = episode_fn(image_set(), 2, 2, tasks_per_step=3, seed=0)
    cfg = TrainConfig(steps=1)
    with pytest.raises(CheckpointError, match=r"[/\\]latest: no checkpoint folder here"):
        train(linear_params(), noisy_loss, sample, cfg, out_dir=tmp_path, resume=True, progress=False)
    train(linear_params(), noisy_loss, sample, cfg, out_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"latest already holds a checkpoint; resume it"):
        train(linear_params(), noisy_loss, sample, cfg, out_dir=tmp_path, progress=False)


def test_a_nan_loss_stops_training_naming_the_step_and_nothing_of_it_is_saved(tmp_path):
    sample = episode_fn(image_set(), 2, 2, tasks_per_step=3, seed=0)
    def nan_at_three(params, episode):
        loss = noisy_loss(params, episode)
        return loss * math.nan if calls.append(1) or len(calls) == 3 else loss
    calls: list[int] = []
    params = linear_params()
    cfg = TrainConfig(steps=5, checkpoint_every=1)
    with pytest.raises(MetaLearningError, match=r"step 3 of 5: the meta-loss is nan\. Nothing of this step was "
                                                r"applied or saved"):
        train(params, nan_at_three, sample, cfg, out_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000001", "step_000002"]
    assert load_checkpoint(tmp_path / "latest").step == 2
    assert torch.isfinite(params["w"]).all() and torch.equal(params["w"], load_checkpoint(tmp_path / "latest")
                                                             .weights["w"])


def test_an_error_from_the_inner_loop_is_reported_with_the_training_step():
    sample = episode_fn(image_set(), 2, 2, tasks_per_step=3, seed=0)
    def diverges(params, episode):
        raise MetaLearningError("the query loss of task 1 is inf after inner step 1 of 1")
    with pytest.raises(MetaLearningError, match=r"step 1 of 2: the meta-loss is nan: the query loss of task 1"):
        train(linear_params(), diverges, sample, TrainConfig(steps=2), progress=False)


# ------------------------------------------------------------------------------- data parallelism
def mean_loss(params: dict[str, torch.Tensor], episode: Episode) -> torch.Tensor:
    """noisy_loss without the noise: the same numbers on every rank and in one process."""
    x, target = episode.support.flatten(2), episode.query.flatten(1).mean(1)
    return (((x @ params["w"] + params["b"]).mean(1) - target) ** 2).mean()


DDP_CFG = TrainConfig(steps=4, outer_lr=0.05, checkpoint_every=4, max_grad_norm=None)


def ddp_sample(step: int) -> Episode:
    return episode_fn(image_set(), 2, 2, tasks_per_step=3, seed=0)(step)   # 3 tasks: 2 on rank 0, 1 on rank 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_worker(rank: int, world: int, port: int, out: Path) -> None:
    """One process as torchrun starts it: its environment, then the same init the entry point uses."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    assert train_module.init_distributed("cpu")[:2] == (rank, world)
    try:
        result = train(linear_params(), mean_loss, ddp_sample, DDP_CFG, out_dir=out, progress=False)
        save_file({n: t.detach() for n, t in result.params.items()}, str(out.parent / f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_give_the_parameters_of_one_process_over_the_same_uneven_tasks(tmp_path):
    one = train(linear_params(), mean_loss, ddp_sample, DDP_CFG, progress=False).params
    # fork, not spawn: the workers inherit the imported torch instead of paying seconds each to import it.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(ddp_worker, args=(2, free_port(), tmp_path / "run"), nprocs=2, start_method=method)
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    saved = load_checkpoint(tmp_path / "run" / "latest")    # written by rank 0 alone
    assert saved.step == 4
    for name in one:
        assert torch.equal(ranks[0][name], ranks[1][name]) and torch.equal(saved.weights[name], ranks[0][name])
        torch.testing.assert_close(ranks[0][name], one[name].detach(), rtol=1e-5, atol=1e-6)

    # The test can fail: averaging the two ranks' means equally (2 tasks vs 1) lands far outside that tolerance.
    def equal_weights(params, episode):
        return sum(0.5 * mean_loss(params, shard(episode, r, 2)) for r in range(2))
    unweighted = train(linear_params(), equal_weights, ddp_sample, DDP_CFG, progress=False).params
    assert (unweighted["w"] - one["w"]).abs().max() > 100 * 1e-5


def test_run_settings_give_the_profile_keep_its_warm_up_fraction_when_longer_and_length_when_shorter():
    run, settings = profiles.run_settings("full", "meta_vae", "glyphs", seed=3)
    cfg = TrainConfig(**settings)
    assert run["model_config"]["blocks"] == 3 and run["train_k_shots"] == [1, 5]
    assert (cfg.steps, cfg.warmup_steps, cfg.seed) == (1600, 160, 3)
    run, settings = profiles.run_settings("cpu", "meta_vae", "glyphs", seed=0, steps=1000, tasks_per_step=64)
    assert (settings["steps"], settings["warmup_steps"], run["tasks_per_step"]) == (1000, 100, 64)
    assert profiles.META_VAE["cpu"]["train"]["steps"] == 400            # the profile itself is untouched
    _, settings = profiles.run_settings("cpu", "meta_vae", "glyphs", seed=0, steps=2)
    assert (settings["steps"], settings["warmup_steps"]) == (2, 40)      # no step faster than the profile's
    with pytest.raises(ConfigError, match="profile='gpu' is not valid"):
        profiles.run_settings("gpu", "meta_vae", "glyphs", seed=0)
