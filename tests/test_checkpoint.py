"""Checkpoints: round trip, atomic writes, damage and mismatch detection, and never unpickling.

Paths in messages are matched with ``[/\\]`` so the tests also hold on Windows.
"""
from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest
import torch

from metagen_utils.training import checkpoint as ckpt
from metagen_utils.training.checkpoint import (check_config, copy_checkpoint, load_checkpoint, restore, save_checkpoint,
                                      verify_checkpoint)
from metagen_utils.errors import CheckpointError


def make_params(seed: int = 0, shape: tuple[int, ...] = (3, 4)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"net.0.weight": torch.randn(*shape, generator=g).requires_grad_(),
            "net.0.bias": torch.randn(shape[0], generator=g).requires_grad_()}


def stepped_optimizer(params: dict[str, torch.Tensor], steps: int = 3) -> torch.optim.AdamW:
    """An AdamW with a few steps of state (exp_avg, exp_avg_sq, step) behind it."""
    optimizer = torch.optim.AdamW(list(params.values()), lr=0.01, weight_decay=0.1)
    for _ in range(steps):
        loss = sum((p ** 2).sum() for p in params.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return optimizer


@pytest.fixture
def saved(tmp_path):
    params = make_params()
    optimizer = stepped_optimizer(params)
    folder = save_checkpoint(tmp_path / "step_000003", params, step=3, config={"train": {"outer_lr": 0.01}},
                             optimizer=optimizer, extra={"history": [1.0, 0.5]})
    return folder, params, optimizer


def test_round_trip_restores_weights_optimizer_state_step_config_and_extra(saved):
    folder, params, optimizer = saved
    loaded = load_checkpoint(folder)
    assert loaded.step == 3 and loaded.config == {"train": {"outer_lr": 0.01}}
    assert loaded.extra == {"history": [1.0, 0.5]}
    fresh = make_params(seed=1)
    fresh_optimizer = torch.optim.AdamW(list(fresh.values()), lr=0.5)
    restore(loaded, fresh, fresh_optimizer, rng=False)
    for name in params:
        assert torch.equal(fresh[name], params[name])
    expected, found = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert found["param_groups"] == expected["param_groups"]   # lr 0.01, betas a tuple again, weight decay
    for index, state in expected["state"].items():
        assert state.keys() == found["state"][index].keys()
        for key in state:
            assert torch.equal(found["state"][index][key], state[key]), key


def test_restored_optimizer_takes_the_same_next_step_as_the_original(saved):
    folder, params, optimizer = saved
    fresh = make_params(seed=1)
    fresh_optimizer = torch.optim.AdamW(list(fresh.values()), lr=0.01)
    restore(load_checkpoint(folder), fresh, fresh_optimizer, rng=False)
    for p, q in ((params, optimizer), (fresh, fresh_optimizer)):
        q.zero_grad()
        sum((t ** 3).sum() for t in p.values()).backward()
        q.step()
    for name in params:
        assert torch.equal(fresh[name], params[name])


def test_rng_states_of_torch_numpy_and_python_come_back(tmp_path):
    torch.manual_seed(5), np.random.seed(6), random.seed(7)
    torch.rand(3), np.random.normal(), random.random()   # move away from the seeded states
    folder = save_checkpoint(tmp_path / "c", make_params(), step=1, config={})
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    restore(load_checkpoint(folder), make_params())
    found = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(found[0], expected[0])
    assert np.array_equal(found[1], expected[1]) and found[2] == expected[2]


def test_checkpoint_folder_holds_only_safetensors_and_json_with_a_manifest_of_hashes(saved):
    folder, _, _ = saved
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "state.json", "state.safetensors",
                                                          "weights.safetensors"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"state.json", "state.safetensors", "weights.safetensors"}
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())


def test_loading_never_unpickles(saved, monkeypatch):
    folder, params, optimizer = saved

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint must load without unpickling anything")
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    fresh = make_params(seed=1)
    restore(load_checkpoint(folder), fresh, torch.optim.AdamW(list(fresh.values())))
    assert torch.equal(fresh["net.0.bias"], params["net.0.bias"])


def test_a_write_that_fails_midway_leaves_no_folder_and_no_temporary_files(tmp_path, monkeypatch):
    def disk_full(path, obj):
        raise OSError("No space left on device")
    monkeypatch.setattr(ckpt, "_write_json", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path / "step_000001", make_params(), step=1, config={})
    assert list(tmp_path.iterdir()) == []


def test_a_failed_overwrite_keeps_the_previous_checkpoint_intact(saved, monkeypatch):
    folder, params, _ = saved
    monkeypatch.setattr(ckpt, "_write_manifest", lambda tmp: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError, match="killed"):
        save_checkpoint(folder, make_params(seed=9), step=4, config={})
    assert load_checkpoint(folder).step == 3
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


def test_copy_makes_an_identical_verified_checkpoint_and_overwrites_the_old_copy(saved, tmp_path):
    folder, params, _ = saved
    save_checkpoint(tmp_path / "latest", make_params(seed=2), step=1, config={})
    copy_checkpoint(folder, tmp_path / "latest")
    latest = load_checkpoint(tmp_path / "latest")
    assert latest.step == 3 and torch.equal(latest.weights["net.0.weight"], params["net.0.weight"].detach())


def test_a_truncated_file_is_named_and_called_truncated(saved):
    folder, _, _ = saved
    path = folder / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"weights\.safetensors: 40 bytes, the manifest says \d+: the file "
                                              r"was truncated"):
        load_checkpoint(folder)


def test_a_garbled_file_of_the_right_size_fails_its_hash(saved):
    folder, _, _ = saved
    path = folder / "state.safetensors"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 10] = bytes(b ^ 0xFF for b in data[middle:middle + 10])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"state\.safetensors: sha256 does not match the manifest"):
        load_checkpoint(folder)


def test_an_edited_state_json_fails_its_hash(saved):
    folder, _, _ = saved
    path = folder / "state.json"
    path.write_text(path.read_text().replace('"step": 3', '"step": 9'))
    with pytest.raises(CheckpointError, match=r"state\.json: sha256 does not match the manifest"):
        load_checkpoint(folder)


def test_a_garbled_manifest_is_named(saved):
    folder, _, _ = saved
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"manifest\.json: not a valid checkpoint manifest"):
        verify_checkpoint(folder)


def test_a_missing_file_and_a_missing_folder_are_named(saved, tmp_path):
    folder, _, _ = saved
    (folder / "state.json").unlink()
    with pytest.raises(CheckpointError, match=r"state\.json: missing"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match=r"[/\\]nowhere: no checkpoint folder here"):
        load_checkpoint(tmp_path / "nowhere")


def test_different_parameter_names_are_a_mismatch_naming_the_weights_file_and_the_names(saved):
    folder, _, _ = saved
    other = {"net.1.weight" if n == "net.0.weight" else n: t for n, t in make_params().items()}
    with pytest.raises(CheckpointError, match=r"weights\.safetensors: parameter names do not match the model: "
                                              r"missing \['net\.1\.weight'\], unexpected \['net\.0\.weight'\]"):
        restore(load_checkpoint(folder), other)


def test_a_different_shape_is_a_mismatch_naming_the_parameter_and_both_shapes(saved):
    folder, _, _ = saved
    with pytest.raises(CheckpointError, match=r"weights\.safetensors: parameter 'net\.0\.weight' is \(3, 4\) "
                                              r"torch\.float32 in the checkpoint, but \(3, 5\)"):
        restore(load_checkpoint(folder), make_params(shape=(3, 5)))


def test_a_failed_restore_leaves_the_parameters_untouched(saved):
    folder, _, _ = saved
    target = {**make_params(seed=4), "extra": torch.zeros(2)}
    before = {n: t.detach().clone() for n, t in target.items()}
    with pytest.raises(CheckpointError):
        restore(load_checkpoint(folder), target)
    assert all(torch.equal(target[n], before[n]) for n in target)


def test_a_different_config_is_a_mismatch_naming_state_json_and_each_setting(saved):
    folder, _, _ = saved
    with pytest.raises(CheckpointError, match=r"state\.json: the checkpoint was made with another configuration "
                                              r"— train\.outer_lr: checkpoint 0\.01, now 0\.02; "
                                              r"train\.steps: checkpoint '<absent>', now 10"):
        check_config(load_checkpoint(folder), {"train": {"outer_lr": 0.02, "steps": 10}})
    check_config(load_checkpoint(folder), {"train": {"outer_lr": 0.01}})   # the same config passes


def test_an_optimizer_over_other_parameters_is_a_mismatch_naming_state_json(saved):
    folder, _, _ = saved
    params = make_params()
    optimizer = torch.optim.AdamW([params["net.0.bias"]])
    with pytest.raises(CheckpointError, match=r"state\.json: the optimizer was saved over parameters"):
        restore(load_checkpoint(folder), params, optimizer)


@pytest.mark.parametrize("name,content,message", [
    ("weights.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00not json", r"weights\.safetensors: not a readable "
                                                                           r"safetensors file"),
    ("state.json", b'{"config": {}}', r"state\.json: not a valid checkpoint state \(KeyError: 'step'\)"),
])
def test_a_file_that_matches_its_manifest_but_cannot_be_read_is_named(saved, name, content, message):
    folder, _, _ = saved
    (folder / name).write_bytes(content)
    ckpt._write_manifest(folder)   # as if written this way: the hashes agree, the contents are still wrong
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)
