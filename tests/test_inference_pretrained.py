"""Tests of metagen_utils.inference.pretrained: notebook 05's weights saved, verified, compared and
installed, and the committed full-profile hybrid itself."""
import json

import pytest
import torch

from metagen_utils.errors import CheckpointError
from metagen_utils.inference import pretrained, set_vae as sv

SETTINGS = dict(latent_dim=4, context_dim=6, width=4, hidden=8, test_steps=2, profile="cpu", seed=0)


def ways(seed: int = 0) -> dict:
    """``{method: meta-parameters}`` of a small class-code VAE, as notebook 05 passes them to ``save``."""
    torch.manual_seed(seed)
    model = sv.ClassVAE(latent_dim=4, context_dim=6, width=4, hidden=8)
    return {"hybrid": sv.init_params(model, 0.03)}


def test_saved_ways_load_back_with_their_settings_and_metrics(tmp_path):
    saved = ways()
    folder = pretrained.save(tmp_path / "w", saved, SETTINGS, {"k1_hybrid_fidelity": 0.625})
    weights = pretrained.load(folder)
    assert list(weights.ways) == ["hybrid"]
    for name, tensor in saved["hybrid"].items():
        torch.testing.assert_close(weights.ways["hybrid"][name], tensor.detach(), rtol=0, atol=0)
    assert weights.metrics == {"k1_hybrid_fidelity": 0.625}
    assert weights.settings["test_steps"] == 2
    model = weights.model()
    assert {n: t.shape for n, t in model.named_parameters()} == \
        {n: t.shape for n, t in weights.ways["hybrid"].items() if n != sv.RATE}


def test_save_refuses_missing_settings_and_unknown_ways_and_writes_nothing(tmp_path):
    with pytest.raises(CheckpointError, match=r"settings lack \['hidden'\]"):
        pretrained.save(tmp_path / "w", ways(), {k: v for k, v in SETTINGS.items() if k != "hidden"})
    with pytest.raises(CheckpointError, match=r"ways \['greedy'\]; expected some of \('gradient'"):
        pretrained.save(tmp_path / "w", {"greedy": ways()["hybrid"]}, SETTINGS)
    assert not (tmp_path / "w").exists()


def test_load_refuses_altered_weights_naming_the_file(tmp_path):
    folder = pretrained.save(tmp_path / "w", ways(), SETTINGS)
    data = bytearray((folder / "weights.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"weights.safetensors: sha256 does not match the manifest"):
        pretrained.load(folder)


def test_check_says_whether_a_run_reproduces_the_committed_weights_and_install_makes_it_so(tmp_path, monkeypatch,
                                                                                        capsys):
    monkeypatch.setattr(pretrained, "COMMITTED", tmp_path / "committed")
    run = pretrained.save(tmp_path / "run", ways(), SETTINGS)
    assert pretrained.main(["check", str(run)]) == 2                 # nothing committed yet
    assert "committed: no checkpoint folder here" in capsys.readouterr().err
    assert pretrained.main(["install", str(run)]) == 0
    assert pretrained.main(["check", str(run)]) == 0
    assert "every tensor is identical" in capsys.readouterr().out
    other = pretrained.save(tmp_path / "other", ways(seed=1), SETTINGS)
    assert pretrained.main(["check", str(other)]) == 1
    assert "differs from" in capsys.readouterr().out
    diff = pretrained.differences(pretrained.load(other), pretrained.load(run))
    assert "hybrid.set_encoder.embed.weight" in diff and "hybrid.inner_lr.context" not in diff   # same start


def test_committed_full_profile_hybrid_verifies_and_builds_the_full_model():
    weights = pretrained.load()                 # every file against its sha256
    size = sum(p.stat().st_size for p in pretrained.COMMITTED.iterdir())
    assert size <= 8 * 2 ** 20, f"{size} bytes of committed weights; the limit is 8 MB"
    assert list(weights.ways) == ["hybrid"]
    s = weights.settings
    assert (s["profile"], s["width"], s["hidden"], s["blocks"]) == ("full", 32, 256, 3)
    model = weights.model()
    assert {n: t.shape for n, t in model.named_parameters()} == \
        {n: t.shape for n, t in weights.ways["hybrid"].items() if n != sv.RATE}
    for k in (1, 5):   # what the full run measured, carried with the weights for notebook 05 to re-check
        assert 0.2 < weights.metrics[f"k{k}_hybrid_fidelity"] <= 1


def test_notebook_05_shows_the_committed_hybrid_s_numbers_as_its_run_recorded_them():
    committed = json.loads((pretrained.REPO / "notebooks" / "metrics.json").read_text())["05_class_inference"]
    weights = pretrained.load()
    for k in (1, 5):
        for measure in ("fidelity", "diversity", "nll", "centred_fidelity", "centred_diversity"):
            assert committed["metrics"][f"k{k}_full_hybrid_{measure}"] == pytest.approx(
                weights.metrics[f"k{k}_hybrid_{measure}"], abs=1e-6), (k, measure)


@pytest.fixture
def two_threads():
    """Notebook 05's threads: its scores are computed on two (the same numbers on any machine with two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_the_committed_full_hybrid_still_scores_what_its_run_recorded(two_threads):
    # Notebook 05 shows the full hybrid's numbers as its run recorded them; here its weights are scored
    # again, on the same tasks and noise, as the notebook scores its own ways.
    from metagen_utils import stats
    from metagen_utils.data import hold_out, load
    from metagen_utils.generation import classifier as clf, pretrained as old_weights
    from metagen_utils.inference import scoring

    full = pretrained.load()
    s, recorded = full.settings, full.metrics
    assert (s["data"], s["seed"]) == ("None", 0)     # the embedded glyphs, the notebook's default seed
    images = hold_out(load("glyphs", 28, progress=False), None, None, seed=s["seed"])
    torch.set_num_threads(1)                          # as the notebook trains its classifier
    classifier = clf.train_classifier(images.split("background"), epochs=2, seed=s["seed"])
    torch.set_num_threads(2)
    tasks = scoring.score_references(classifier, images.split(s["split"]), old_weights.load(),
                                     n_episodes=s["episodes"], temperatures=(0.7, 0.85), seed=s["seed"])
    scores = scoring.score_methods({"hybrid": (full.model(), "hybrid", full.ways["hybrid"])}, s["test_steps"],
                                   tasks)
    for k in (1, 5):
        hybrid = scores[k]["hybrid"]
        again = {"fidelity": hybrid["fidelity"].mean(), "diversity": hybrid["diversity"].mean(),
                 "nll": hybrid["nll"].mean()}
        for tau, cooled in hybrid["temperatures"].items():
            again.update({f"tau{tau}_{x}": cooled[x].mean() for x in ("fidelity", "diversity")})
        for name, key in zip(scoring.REFERENCES, ("old_model", "support_gaussian")):
            for x in ("fidelity", "nll"):
                again[f"minus_{key}_{x}"], again[f"minus_{key}_{x}_ci"] = stats.paired_difference(
                    hybrid[x], scores[k][name][x])
        for key, value in again.items():
            assert value == pytest.approx(recorded[f"k{k}_hybrid_{key}"], rel=1e-6, abs=1e-6), (k, key)
    # notebook 05's section 7: z drawn near the support, by a prior measured on the background classes
    model, hybrid = full.model(), full.ways["hybrid"]
    priors = {"hybrid": {k: sv.fit_latent_prior(model, hybrid, "hybrid", images.split("background"), k,
                                                s["test_steps"], seed=s["seed"]) for k in (1, 5)}}
    near = scoring.score_methods({"hybrid": (model, "hybrid", hybrid)}, s["test_steps"], tasks, priors=priors,
                                 likelihood=False)     # as notebook 05: the IS-NLL draws no samples
    for k in (1, 5):
        for tau, one in {1.0: near[k]["hybrid"], **near[k]["hybrid"]["temperatures"]}.items():
            tag = "" if tau == 1.0 else f"tau{tau}_"
            for x in ("fidelity", "diversity"):
                assert one[x].mean() == pytest.approx(recorded[f"k{k}_hybrid_centred_{tag}{x}"], rel=1e-6,
                                                      abs=1e-6), (k, tag, x)
