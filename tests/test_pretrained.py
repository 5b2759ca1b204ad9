"""Tests of metagen_utils.generation.pretrained: notebook 04's weights saved, verified, compared and installed, and
the committed full-profile weights themselves."""
import json

import numpy as np
import pytest
import torch

from metagen_utils.generation import vae as gen

from metagen_utils.generation import pretrained
from metagen_utils.errors import CheckpointError
from metagen_utils.meta.maml import MetaConfig, init_meta_params, params_of

SETTINGS = dict(latent_dim=4, context_dim=3, width=4, blocks=1, inner_steps=2, inner_lr=0.5,
                adapt=["context", "decoder.up"], test_steps={1: 2, 5: 4}, profile="cpu", seed=0)


def trained(seed: int = 0) -> tuple:
    """(meta, joint, spread) of a small model, as notebook 04 passes them to ``pretrained.save``."""
    torch.manual_seed(seed)
    model = gen.ConditionalVAE(4, 3, 4, 1)
    cfg = MetaConfig("metasgd", inner_steps=2, inner_lr=0.5, adapt=("context", "decoder.up"))
    meta = init_meta_params(model, cfg)      # shares storage with the module's tensors, as in the notebook
    return meta, params_of(model), (torch.rand(4), torch.rand(4))


def test_saved_weights_load_back_with_their_settings_and_metrics(tmp_path):
    meta, joint, spread = trained()
    folder = pretrained.save(tmp_path / "w", meta, joint, spread, SETTINGS,
                             {"k1_adapted_fidelity": np.float32(0.625)})
    weights = pretrained.load(folder)
    for name, tensor in meta.items():
        torch.testing.assert_close(weights.meta[name], tensor.detach(), rtol=0, atol=0)
    assert sorted(weights.joint) == sorted(joint)
    torch.testing.assert_close(weights.spread[1], spread[1], rtol=0, atol=0)
    assert weights.metrics == {"k1_adapted_fidelity": 0.625}
    assert weights.test_steps() == {1: 2, 5: 4}
    cfg = weights.meta_config()
    assert (cfg.inner_steps, cfg.inner_lr, cfg.adapt) == (2, 0.5, ("context", "decoder.up"))
    model = weights.model()
    assert {n: t.shape for n, t in params_of(model).items()} == {n: t.shape for n, t in weights.joint.items()}


def test_save_refuses_settings_that_could_not_rebuild_the_model(tmp_path):
    meta, joint, spread = trained()
    with pytest.raises(CheckpointError, match=r"settings lack \['blocks'\]"):
        pretrained.save(tmp_path / "w", meta, joint, spread, {k: v for k, v in SETTINGS.items() if k != "blocks"})
    assert not (tmp_path / "w").exists()


def test_load_refuses_altered_weights_naming_the_file(tmp_path):
    folder = pretrained.save(tmp_path / "w", *trained(), SETTINGS)
    data = bytearray((folder / "weights.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"weights.safetensors: sha256 does not match the manifest"):
        pretrained.load(folder)


def test_differences_are_empty_for_a_reproduced_run_and_name_each_changed_tensor(tmp_path):
    a = pretrained.load(pretrained.save(tmp_path / "a", *trained(), SETTINGS))
    again = pretrained.load(pretrained.save(tmp_path / "b", *trained(), SETTINGS))
    assert pretrained.differences(again, a) == {}
    assert "every tensor is identical" in pretrained.describe_match(again, a)
    meta, joint, spread = trained()
    meta = {**meta, "context": meta["context"] + 0.25}
    del joint["decoder.out.bias"]
    spread = (spread[0], spread[1] + 0.5)
    changed = pretrained.load(pretrained.save(tmp_path / "c", meta, joint, spread, SETTINGS))
    diff = pretrained.differences(changed, a)
    assert diff == {"meta.context": pytest.approx(0.25), "joint.decoder.out.bias": float("inf"),
                    "spread.posterior_var": pytest.approx(0.5)}
    assert "differs from" in pretrained.describe_match(changed, a) and "meta.context" in \
        pretrained.describe_match(changed, a)


def test_check_and_install_on_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "COMMITTED", tmp_path / "committed")
    run = pretrained.save(tmp_path / "run", *trained(), SETTINGS)
    assert pretrained.main(["check", str(run)]) == 2                 # nothing committed yet
    assert "committed: no checkpoint folder here" in capsys.readouterr().err
    assert pretrained.main(["install", str(run)]) == 0
    assert pretrained.main(["check", str(run)]) == 0
    other = pretrained.save(tmp_path / "other", *trained(seed=1), SETTINGS)
    assert pretrained.main(["check", str(other)]) == 1
    assert "differs from" in capsys.readouterr().out


def test_committed_full_profile_weights_verify_and_build_the_full_model():
    weights = pretrained.load()                 # every file against its sha256
    size = sum(p.stat().st_size for p in pretrained.COMMITTED.iterdir())
    assert size <= 20 * 2 ** 20, f"{size} bytes of committed weights; the limit is 20 MB"
    assert weights.settings["profile"] == "full"
    assert (weights.settings["width"], weights.settings["blocks"]) == (32, 3)
    model = weights.model()
    assert {n: t.shape for n, t in params_of(model).items()} == {n: t.shape for n, t in weights.joint.items()}
    manifest = json.loads((pretrained.COMMITTED / "manifest.json").read_text())
    assert set(manifest["files"]) == {"weights.safetensors", "state.safetensors", "state.json"}
    for k in (1, 5):   # what the full run measured, carried with the weights for notebook 04 to re-check
        assert 0.2 < weights.metrics[f"k{k}_adapted_fidelity"] <= 1


def test_notebook_04_re_scores_the_committed_weights_to_the_fidelity_their_run_recorded():
    committed = json.loads((pretrained.REPO / "notebooks" / "metrics.json").read_text())["04_meta_generation"]
    weights = pretrained.load()
    for k in (1, 5):
        assert committed["metrics"][f"k{k}_full_weights_fidelity"] == pytest.approx(
            weights.metrics[f"k{k}_adapted_fidelity"], abs=1e-6)


def full_profile_rows(m: dict) -> list[str]:
    """docs/results.md's table of the full profile, as the committed weights' run measured it (``m``: its
    metrics)."""
    def diff(k: int, name: str, decimals: int) -> str:
        value, half = m[f"k{k}_{name}_adapted_minus_best_baseline"], m[f"k{k}_{name}_ci"]
        return f"{value:+.{decimals}f} ± {half:.{decimals}f}".replace("-", "−")
    real = f"{m['k1_real_support_fidelity']:.2f} / {m['k5_real_support_fidelity']:.2f}"
    return [f"| fidelity, adapted (chance 0.20; real support {real}) | {m['k1_adapted_fidelity']:.3f} | "
            f"{m['k5_adapted_fidelity']:.3f} |",
            f"| − support-fitted Gaussian | {diff(1, 'fidelity', 3)} | {diff(5, 'fidelity', 3)} |",
            f"| IS-NLL − best baseline (nats / image) | {diff(1, 'nll', 2)} | {diff(5, 'nll', 2)} |",
            f"| Fréchet distance − best baseline (bootstrap) | {diff(1, 'frechet', 1)} | {diff(5, 'frechet', 1)} |"]


def test_the_results_page_s_full_profile_table_is_what_the_committed_weights_run_measured():
    readme = (pretrained.REPO / "docs" / "results.md").read_text()
    for row in full_profile_rows(pretrained.load().metrics):
        assert row in readme, f"docs/results.md lacks the row {row!r}"
