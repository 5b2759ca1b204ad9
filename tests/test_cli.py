"""``python -m metagen_utils {train,evaluate,sample}``: a tiny run end to end, and every bad input's message.

The commands run in this process (``cli.main``) with the ``cpu`` profile shrunk to a few tiny tasks, so
the test exercises the wiring, not the profile's sizes. Paths in messages are matched with ``[/\\]``.
"""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from metagen_utils.training import loop as train_module
from metagen_utils.training.checkpoint import load_checkpoint
from metagen_utils import profiles
from metagen_utils.cli import main

TINY_PROFILE = {"k_shot": 2, "n_query": 1, "tasks_per_step": 2, "val_tasks": 2, "eval_tasks": 2,
                "model_config": {"latent_dim": 4, "algorithm": "fomaml", "inner_steps": 1, "inner_lr": 0.5},
                "train": {"steps": 2, "outer_lr": 1e-2, "warmup_steps": 0, "checkpoint_every": 1,
                          "validate_every": 1}}


def omniglot_folder(root: Path, per_class: int = 3) -> Path:
    """Omniglot layout: 6 background alphabets (the last 5 become validation) and 1 evaluation alphabet,
    2 characters each; black strokes on white, placed by alphabet, character and drawing."""
    alphabets = [("images_background", f"alpha{a}") for a in range(6)] + [("images_evaluation", "omega")]
    for a, (split, alphabet) in enumerate(alphabets):
        for c in range(2):
            folder = root / split / alphabet / f"char{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                page = np.full((28, 28), 255, np.uint8)
                page[2 + 3 * a:8 + 3 * a, 2 + 8 * c + 2 * i:6 + 8 * c + 2 * i] = 0
                assert cv2.imwrite(str(folder / f"{i}.png"), page)
    return root


@pytest.fixture
def tiny_profile(monkeypatch):
    monkeypatch.setitem(profiles.CONV_GENERATOR, "cpu", TINY_PROFILE)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


@pytest.mark.slow
def test_train_then_evaluate_then_sample_write_checkpoints_metrics_and_a_grid(tmp_path, tiny_profile, capsys):
    data, out = omniglot_folder(tmp_path / "data"), tmp_path / "run"
    assert main(["train", "--model", "conv_generator", "--data", str(data), "--out", str(out), "--device", "cpu",
                 "--seed", "3"]) == 0
    trained = json.loads((out / "metrics" / "train.json").read_text())
    assert trained["steps"] == 2 and len(trained["train_losses"]) == 2 and len(trained["validation"]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["best", "latest", "metrics", "step_000001", "step_000002"]
    assert load_checkpoint(out / "best").step == trained["best_step"]

    assert main(["evaluate", "--out", str(out), "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics" / "evaluate.json").read_text())
    assert metrics["tasks"] == 2 and metrics["step"] == trained["best_step"] and metrics["split"] == "evaluation"
    assert Path(metrics["checkpoint"]).name == "best"
    for name in ("mse_before", "mse_after", "psnr_db_before", "psnr_db_after"):
        assert set(metrics[name]) == {"mean", "ci95"} and np.isfinite(metrics[name]["mean"])
    assert 0 < metrics["mse_after"]["mean"] < 1
    assert "psnr_db_after = " in capsys.readouterr().out

    assert main(["sample", "--out", str(out), "--classes", "2", "--device", "cpu"]) == 0
    png = out / "figures" / "samples.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid = cv2.imread(str(png))
    assert grid.shape[0] > 50 and grid.shape[1] > grid.shape[0]   # 2 rows of 2 support + 1 generated
    assert [p for p in out.rglob(".*")] == []   # no temporary files or folders left behind


@pytest.mark.slow
def test_resuming_with_other_steps_exits_1_naming_state_json_and_the_setting(tmp_path, tiny_profile, capsys):
    data, out = omniglot_folder(tmp_path / "data"), tmp_path / "run"
    common = ["train", "--model", "conv_generator", "--data", str(data), "--out", str(out), "--device", "cpu"]
    assert main([*common, "--steps", "1"]) == 0
    assert main([*common, "--steps", "3", "--resume"]) == 1
    assert "state.json: the checkpoint was made with another configuration — train.steps: checkpoint 1, now 3" \
        in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["train", "--out", "x", "--steps", "0"], "argument --steps: '0' is not an integer ≥ 1"),
    (["train", "--out", "x", "--seed", "-2"], "argument --seed: '-2' is not an integer ≥ 0"),
    (["train", "--out", "x", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["train", "--out", "x", "--profile", "huge"], "argument --profile: invalid choice: 'huge'"),
    (["train"], "the following arguments are required: --out"),
    (["sample", "--out", "x", "--classes", "zero"], "argument --classes: 'zero' is not an integer ≥ 1"),
    ([], "the following arguments are required: {train,evaluate,sample}"),
])
def test_bad_options_exit_2_with_argparse_naming_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_data_path_that_is_not_a_folder_exits_1_naming_it(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["train", "--data", str(missing), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "python -m metagen_utils train: error: DATA=" in err and "nowhere' is not a folder" in err


def test_evaluating_a_run_folder_without_checkpoints_exits_1_naming_the_folder(tmp_path, capsys):
    assert main(["evaluate", "--out", str(tmp_path), "--device", "cpu"]) == 1
    assert f"{tmp_path / 'latest'}: no checkpoint folder here" in capsys.readouterr().err


def test_python_dash_m_metagen_utils_runs_the_cli_and_exits_with_its_status(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["metagen_utils", "sample", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("metagen_utils", run_name="__main__")   # what `python -m metagen_utils` runs
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "python -m metagen_utils sample: error:" in err and "no checkpoint folder here" in err


TINY_VAE = {"k_shot": 2, "train_k_shots": [1, 2], "n_query": 1, "tasks_per_step": 2, "val_tasks": 2,
            "eval_tasks": 3,
            "model_config": {"latent_dim": 4, "context_dim": 4, "width": 8, "joint_steps": 3, "joint_lr": 2e-3,
                             "class_steps": 0, "inner_steps": 2, "inner_lr": 0.5, "test_steps": 3,
                             "adapt": ["context", "decoder.up"], "initial_rates": {"decoder.up": 1e-4},
                             "is_samples": 4},
            "train": {"steps": 2, "outer_lr": 4e-3, "warmup_steps": 0, "max_grad_norm": 100.0,
                      "checkpoint_every": 1, "validate_every": 1}}


@pytest.fixture
def tiny_vae(monkeypatch):
    from metagen_utils.generation import meta_vae
    monkeypatch.setitem(profiles.META_VAE, "cpu", TINY_VAE)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


@pytest.mark.slow
def test_notebook_04s_model_trains_evaluates_and_samples_from_the_command_line(tmp_path, tiny_vae, capsys):
    data, out = omniglot_folder(tmp_path / "data"), tmp_path / "run"
    assert main(["train", "--model", "meta_vae", "--data", str(data), "--out", str(out), "--device", "cpu"]) == 0
    checkpoint = load_checkpoint(out / "latest")
    assert checkpoint.config["run"]["model"] == "meta_vae" and checkpoint.step == 2
    assert "inner_lr.decoder.up.weight" in checkpoint.weights and "context" in checkpoint.weights

    assert main(["evaluate", "--out", str(out), "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics" / "evaluate.json").read_text())
    assert metrics["tasks"] == 3
    for name in ("nelbo_before", "nelbo_after", "nll_before", "nll_after"):
        assert np.isfinite(metrics[name]["mean"]) and metrics[name]["mean"] > 0   # nats per 28×28 image
    assert metrics["nll_after"]["mean"] <= metrics["nelbo_after"]["mean"]   # the IS bound is the tighter one
    assert "nll_after = " in capsys.readouterr().out

    assert main(["sample", "--out", str(out), "--classes", "2", "--device", "cpu"]) == 0
    assert (out / "figures" / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class Interrupted(Exception):
    """Stands in for a killed job."""


@pytest.mark.slow
def test_notebook_04s_model_resumes_bit_identically_without_pretraining_again(tmp_path, tiny_vae, monkeypatch):
    from metagen_utils.generation import vae as generation

    data = omniglot_folder(tmp_path / "data")
    common = ["train", "--model", "meta_vae", "--data", str(data), "--device", "cpu", "--class-steps", "2"]
    assert main([*common, "--out", str(tmp_path / "straight")]) == 0
    assert load_checkpoint(tmp_path / "straight" / "latest").config["run"]["model_config"]["class_steps"] == 2

    real_episodes, real_joint, pretrained = train_module.episode_fn, generation.train_joint, []
    def killed_at_step_two(*args, **kwargs):
        sample, training = real_episodes(*args, **kwargs), not hasattr(killed_at_step_two, "called")
        killed_at_step_two.called = True          # the first sampler is training's, the second validation's
        def maybe(step):
            if training and step == 2:
                raise Interrupted
            return sample(step)
        return maybe
    monkeypatch.setattr(train_module, "episode_fn", killed_at_step_two)
    real_contexts = generation.train_class_contexts
    monkeypatch.setattr(generation, "train_joint", lambda *a, **k: pretrained.append(1) or real_joint(*a, **k))
    monkeypatch.setattr(generation, "train_class_contexts",
                        lambda *a, **k: pretrained.append(2) or real_contexts(*a, **k))
    with pytest.raises(Interrupted):
        main([*common, "--out", str(tmp_path / "resumed")])
    assert load_checkpoint(tmp_path / "resumed" / "latest").step == 1
    monkeypatch.setattr(train_module, "episode_fn", real_episodes)
    assert main([*common, "--out", str(tmp_path / "resumed"), "--resume"]) == 0
    assert pretrained == [1, 2]           # the joint VAE and class contexts were trained once, not again on resume
    straight, resumed = (load_checkpoint(tmp_path / run / "latest") for run in ("straight", "resumed"))
    assert resumed.step == straight.step == 2
    assert straight.weights.keys() == resumed.weights.keys()
    for name, tensor in straight.weights.items():
        assert torch.equal(tensor, resumed.weights[name]), name


def test_pretrain_steps_is_refused_for_a_model_without_pretraining(tmp_path, tiny_profile, capsys):
    data = omniglot_folder(tmp_path / "data")
    assert main(["train", "--model", "conv_generator", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--device", "cpu", "--pretrain-steps", "5"]) == 1
    assert "pretrain_steps=5: model 'conv_generator' has no pretraining stage" in capsys.readouterr().err
    assert main(["train", "--model", "conv_generator", "--data", str(data), "--out", str(tmp_path / "run2"),
                 "--device", "cpu", "--class-steps", "5"]) == 1
    assert "class_steps=5: model 'conv_generator' has no pretraining stage" in capsys.readouterr().err


TINY_SET_VAE = {"k_shot": 2, "train_k_shots": [1, 2], "n_query": 1, "tasks_per_step": 2, "val_tasks": 2,
                "eval_tasks": 2,
                "model_config": {"latent_dim": 4, "context_dim": 6, "width": 4, "hidden": 8, "shared_steps": 2,
                                 "inner_steps": 1,
                                 "test_steps": 2, "initial_rate": 0.1, "kl_weight": [8.0, 2.0, 0.6],
                                 "method": "hybrid", "is_samples": 2},
                "train": {"steps": 3, "outer_lr": 2e-3, "warmup_steps": 0, "checkpoint_every": 3,
                          "validate_every": 3}}


@pytest.fixture
def tiny_set_vae(monkeypatch):
    monkeypatch.setitem(profiles.SET_VAE_RUN, "cpu", TINY_SET_VAE)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["amortised", "hybrid"])
def test_set_vae_trains_as_notebook_05_does_then_evaluates_and_samples(tmp_path, tiny_set_vae, method, capsys):
    from metagen_utils.data import hold_out, load
    from metagen_utils.inference import set_vae as sv

    data, out = omniglot_folder(tmp_path / "data"), tmp_path / "run"
    assert main(["train", "--model", "set_vae", "--method", method, "--data", str(data), "--out", str(out),
                 "--device", "cpu", "--seed", "2", "--pretrain-steps", "4"]) == 0
    assert "background" in capsys.readouterr().out          # the held-out summary
    trained = json.loads((out / "metrics" / "train.json").read_text())
    assert trained["model"] == "set_vae" and len(trained["train_losses"]) == 3
    # the same weights as notebook 05's training of that way, for the same seed: the shared stage
    # (--pretrain-steps of them), then the way's own steps
    s = TINY_SET_VAE["model_config"]
    torch.manual_seed(2)
    model = sv.ClassVAE.from_settings(s)
    params = sv.init_params(model, s["initial_rate"])
    background = hold_out(load(str(data), 28, progress=False), seed=2).split("background")
    common = dict(k_shots=[1, 2], n_query=1, tasks_per_step=2, lr=2e-3, inner_steps=1, progress=False)
    shared = sv.train(model, params, "amortised", background, 4, beta=(8.0, 2.0, 0.6), seed=2, **common)
    losses = sv.train(model, params, method, background, 3, beta=2.0, seed=3, **common)
    assert losses == trained["train_losses"]
    assert load_checkpoint(out / "best").extra["history"]["shared_losses"] == shared
    saved = load_checkpoint(out / "best").weights
    assert all(torch.equal(saved[n], params[n].detach()) for n in params)

    assert main(["evaluate", "--out", str(out), "--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics" / "evaluate.json").read_text())
    assert metrics["nll"]["mean"] <= metrics["nelbo"]["mean"] + 1e-3
    assert main(["sample", "--out", str(out), "--device", "cpu"]) == 0
    assert cv2.imread(str(out / "figures" / "samples.png")) is not None


def test_set_vae_refuses_resume_and_method_is_only_for_set_vae(tmp_path, tiny_set_vae, capsys):
    data = omniglot_folder(tmp_path / "data")
    assert main(["train", "--model", "set_vae", "--data", str(data), "--out", str(tmp_path / "r"),
                 "--device", "cpu", "--resume"]) == 1
    assert "--resume and torchrun are not supported" in capsys.readouterr().err
    assert main(["train", "--model", "meta_vae", "--method", "hybrid", "--data", str(data),
                 "--out", str(tmp_path / "m"), "--device", "cpu"]) == 1
    assert "--method is for set_vae" in capsys.readouterr().err


def test_held_out_options_choose_the_classes_and_evaluate_reuses_them(tmp_path, tiny_profile, capsys):
    data, out = omniglot_folder(tmp_path / "data"), tmp_path / "run"
    assert main(["train", "--model", "conv_generator", "--data", str(data), "--out", str(out), "--device", "cpu",
                 "--validation", "alpha1,alpha2", "--evaluation", "omega"]) == 0
    printed = capsys.readouterr().out
    assert "validation      4 classes" in printed and "alpha1, alpha2" in printed
    run = load_checkpoint(out / "latest").config["run"]
    assert run["held_out"] == {"validation": ["alpha1", "alpha2"], "evaluation": ["omega"]}
    assert main(["evaluate", "--out", str(out), "--device", "cpu"]) == 0
    with pytest.raises(SystemExit):
        main(["train", "--out", str(out), "--validation", ","])


def test_set_vae_draws_its_samples_as_notebook_05_s_section_7_does(glyph_set):
    from metagen_utils.inference import set_vae as sv
    from metagen_utils.inference.command import set_vae

    run, background = {**TINY_SET_VAE, "seed": 0}, glyph_set.split("background").select_classes(list(range(20)))
    model = set_vae(run, (1, 28, 28), "cpu", prior_from=background)
    support = torch.from_numpy(glyph_set.split("evaluation").images[:3])      # one class's first images
    drawn = model.generate_fn(model.meta_params, support)
    s, net = run["model_config"], sv.ClassVAE(4, 6, 4, 8)
    prior = sv.fit_latent_prior(net, model.meta_params, "hybrid", background, 3, s["test_steps"], seed=0)
    codes = sv.contexts(net, model.meta_params, "hybrid", support[None], s["test_steps"],
                        torch.Generator().manual_seed(0))
    want = sv.sample(net, model.meta_params, codes, 3, torch.Generator().manual_seed(1), prior=prior,
                     support=support[None])[0]
    torch.testing.assert_close(drawn, want, rtol=0, atol=0)
    plain = set_vae(run, (1, 28, 28), "cpu").generate_fn(model.meta_params, support)   # z ~ N(0, I)
    assert drawn.shape == plain.shape == (3, 1, 28, 28) and not torch.equal(drawn, plain)


def test_set_vae_fits_its_prior_once_per_k_until_the_weights_change(glyph_set, monkeypatch):
    from metagen_utils.inference import set_vae as sv
    from metagen_utils.inference.command import set_vae

    fits = []
    fit = sv.fit_latent_prior
    monkeypatch.setattr(sv, "fit_latent_prior", lambda *a, **kw: fits.append(a[4]) or fit(*a, **kw))
    run, background = {**TINY_SET_VAE, "seed": 0}, glyph_set.split("background").select_classes(list(range(20)))
    model = set_vae(run, (1, 28, 28), "cpu", prior_from=background)
    images = torch.from_numpy(glyph_set.split("evaluation").images[:6])
    first = model.generate_fn(model.meta_params, images[:3])
    again = model.generate_fn(model.meta_params, images[3:6])          # another class, the same K
    assert fits == [3] and not torch.equal(first, again)
    model.generate_fn(model.meta_params, images[:2])                   # another K
    assert fits == [3, 2]
    with torch.no_grad():
        model.meta_params["decoder.out.bias"].add_(0.5)                # the weights change in place
    changed = model.generate_fn(model.meta_params, images[:2])
    assert fits == [3, 2, 2] and changed.shape == (2, 1, 28, 28)
