"""Notebooks 04 and 05 end to end on a folder of one's own, as ``make run DATA=…`` runs it, at tiny step counts:
a class-per-folder set (no splits of its own) and an Omniglot-layout set with two background alphabets.
The images are real glyphs written to disk as black-on-white PNGs."""
from __future__ import annotations

from pathlib import Path

import cv2
import nbformat
import numpy as np
import pytest

from metagen_utils.data import load_glyphs
from metagen_utils.kit import harness

pytestmark = pytest.mark.slow
# Tiny runs: each notebook's step counts, one evaluation episode.
TINY = {"04": {"JOINT_STEPS": 20, "META_STEPS": 2, "EPISODES": 1, "TEST_STEPS": 1},
        "05": {"SHARED_STEPS": 2, "STEPS": 2, "EPISODES": 1, "TEST_STEPS": 1, "TEMPERATURES": [0.5]}}
NOTEBOOK = {"04": ("04_meta_generation", "k5_adapted_fidelity"), "05": ("05_class_inference", "k5_hybrid_fidelity")}


def write_class(folder: Path, images: np.ndarray) -> None:
    """One class: its images ``[n, 1, 28, 28]`` (ink = 1) as PNG files, ink black on white."""
    folder.mkdir(parents=True, exist_ok=True)
    for j, image in enumerate(images):
        assert cv2.imwrite(str(folder / f"{j:02d}.png"), (255 * (1 - image[0])).astype(np.uint8))


def glyph_classes(count: int) -> list[np.ndarray]:
    glyphs = load_glyphs(28, progress=False).split("evaluation")
    return [glyphs.images[glyphs.labels == c] for c in range(count)]


def run_notebook(number: str, data: Path, out: Path, **parameters) -> nbformat.NotebookNode:
    name, metric = NOTEBOOK[number]
    metrics = harness.run(out, {"DATA": str(data), **TINY[number], **parameters}, only=[number])
    assert 0 <= metrics[name][metric] <= 1
    return nbformat.read(str(out / "notebooks" / f"{name}.ipynb"), as_version=4)


def printed(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.parametrize("number", ["04", "05"])
def test_the_notebook_runs_on_a_class_per_folder_set_and_says_which_classes_it_held_out(tmp_path, number):
    root = tmp_path / "my_glyphs"
    for c, images in enumerate(glyph_classes(40)):
        write_class(root / f"class{c:02d}", images)
    # notebook 05 also trains on a subset of its classes, as a small set of one's own: its Gaussian's VAE too
    fewer = {"BACKGROUND_CLASSES": 20, "GAUSSIAN_STEPS": 20} if number == "05" else {}
    text = printed(run_notebook(number, root, tmp_path / "out", **fewer))
    # the seeded default: 10 % of the 40 classes for validation, 20 % for evaluation
    for line in ("background     28 classes    560 images  my_glyphs",
                 "validation      4 classes     80 images  my_glyphs",
                 "evaluation      8 classes    160 images  my_glyphs"):
        assert line in text, text[:2000]
    if fewer:
        assert "training on 20 background classes" in text, text[:2000]
        assert "the support-fitted Gaussian's VAE: trained again on these classes" in text, text[:2000]


@pytest.mark.parametrize("number", ["04", "05"])
def test_the_notebook_runs_on_an_omniglot_folder_with_two_background_alphabets(tmp_path, number):
    root, classes = tmp_path / "omniglot", glyph_classes(18)
    layout = [("images_background", "Alpha"), ("images_background", "Beta"), ("images_evaluation", "Gamma")]
    for index, images in enumerate(classes):
        split, alphabet = layout[index // 6]
        write_class(root / split / alphabet / f"character{index % 6 + 1:02d}", images)
    text = printed(run_notebook(number, root, tmp_path / "out"))
    for line in ("background      6 classes    120 images  Alpha", "validation      6 classes    120 images  Beta",
                 "evaluation      6 classes    120 images  Gamma"):
        assert line in text, text[:2000]
