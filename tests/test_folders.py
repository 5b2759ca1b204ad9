"""Local data sets: class-per-folder and Omniglot layouts, layout detection, bad files and folders.

Paths in messages are matched with ``[/\\]`` so the tests also hold on Windows.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from metagen_utils.errors import ConfigError, DataError
from metagen_utils.data.folders import (SkippedFile, detect_layout, load_class_folders, load_folder, load_omniglot)
from metagen_utils.data.preprocess import PreprocessConfig


def stroke_png(path, size=(105, 105), seed=0):
    """Omniglot style: a black bar on white, at a position that depends on ``seed``."""
    page = np.full(size, 255, np.uint8)
    row = 10 + 7 * seed % (size[0] - 30)
    page[row:row + 20, size[1] // 2 - 8:size[1] // 2 + 8] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), page)
    return path


def colour_file(path, size=(40, 60)):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8))
    return path


@pytest.fixture
def class_root(tmp_path):
    """shapes/{b_square: 2 images, a_circle: 3 images of mixed depth, colour and size}."""
    root = tmp_path / "shapes"
    stroke_png(root / "b_square" / "1.png")
    stroke_png(root / "b_square" / "2.PNG", size=(50, 80))
    stroke_png(root / "a_circle" / "x.png", size=(28, 28))
    colour_file(root / "a_circle" / "y.jpg")
    assert cv2.imwrite(str(root / "a_circle" / "z.tif"), np.full((30, 20), 40000, np.uint16))
    return root


@pytest.fixture
def omniglot_root(tmp_path):
    """images_background/{Alpha, Beta}, images_evaluation/{Gamma}; 2 characters × 2 drawings each."""
    root = tmp_path / "omniglot"
    for split, alphabets in (("images_background", ["Beta", "Alpha"]), ("images_evaluation", ["Gamma"])):
        for alphabet in alphabets:
            for ch in ("character01", "character02"):
                for i in range(2):
                    stroke_png(root / split / alphabet / ch / f"{alphabet}_{ch}_{i}.png", seed=i)
    (root / "images_background.zip").write_bytes(b"PK not read")  # files beside the folders are ignored
    return root


def truncated_png(path):
    ok, buf = cv2.imencode(".png", np.zeros((20, 20), np.uint8))
    path.write_bytes(buf.tobytes()[:40])
    return path


# --- one folder per class -----------------------------------------------------------------------

def test_class_folders_are_sorted_by_name_and_labelled(class_root):
    images = load_class_folders(class_root)
    assert images.classes == ("a_circle", "b_square")
    assert images.alphabets == ("shapes", "shapes") and images.splits == ("background", "background")
    assert images.class_counts().tolist() == [3, 2]
    assert images.labels.tolist() == [0, 0, 0, 1, 1]
    assert [Path(f).name for f in images.files] == ["x.png", "y.jpg", "z.tif", "1.png", "2.PNG"]


def test_class_folders_mixed_size_colour_and_depth_become_one_array(class_root):
    images = load_class_folders(class_root, PreprocessConfig(size=32, channels=1))
    assert images.images.shape == (5, 1, 32, 32) and images.images.dtype == np.float32
    assert 0 <= images.images.min() and images.images.max() <= 1
    np.testing.assert_allclose(images.images[2], 40000 / 65535, rtol=1e-5)  # the flat 16-bit file


def test_class_folders_honour_invert_and_split(class_root):
    plain = load_class_folders(class_root)
    inverted = load_class_folders(class_root, PreprocessConfig(invert=True), split="evaluation")
    np.testing.assert_allclose(inverted.images, 1 - plain.images, atol=1e-6)
    assert inverted.splits == ("evaluation", "evaluation")


def test_hidden_files_and_folders_are_ignored(class_root):
    (class_root / "a_circle" / ".DS_Store").write_bytes(b"\x00\x01junk")
    (class_root / ".ipynb_checkpoints").mkdir()
    assert load_class_folders(class_root).class_counts().tolist() == [3, 2]


def test_text_file_in_class_folder_error_names_the_file(class_root):
    (class_root / "a_circle" / "notes.txt").write_text("drawn by hand")
    with pytest.raises(DataError, match=r"a_circle[/\\]notes\.txt: not an image file \(extension '\.txt'\)"):
        load_class_folders(class_root)


def test_truncated_image_in_class_folder_error_names_the_file(class_root):
    truncated_png(class_root / "b_square" / "cut.png")
    with pytest.raises(DataError, match=r"b_square[/\\]cut\.png: corrupt or truncated PNG"):
        load_class_folders(class_root)


def test_skip_bad_skips_warns_and_reports_the_bad_files(class_root):
    (class_root / "a_circle" / "notes.txt").write_text("drawn by hand")
    truncated_png(class_root / "b_square" / "cut.png")
    report: list[SkippedFile] = []
    with pytest.warns(UserWarning, match=r"skipped 2 bad file\(s\)(.|\n)*notes\.txt(.|\n)*cut\.png"):
        images = load_class_folders(class_root, skip_bad=True, report=report)
    assert images.class_counts().tolist() == [3, 2]
    assert [Path(s.path).name for s in report] == ["notes.txt", "cut.png"]
    assert "corrupt or truncated PNG" in report[1].reason
    assert not any(f.endswith(("notes.txt", "cut.png")) for f in images.files)


def test_class_with_only_bad_files_is_an_error_even_with_skip_bad(class_root):
    (class_root / "c_empty").mkdir()
    (class_root / "c_empty" / "readme.md").write_text("todo")
    report: list[SkippedFile] = []
    with pytest.raises(DataError, match=r"c_empty: no readable image .*skipped as bad \(readme\.md\)"):
        load_class_folders(class_root, skip_bad=True, report=report)
    assert [Path(s.path).name for s in report] == ["readme.md"]  # filled even though loading failed


def test_folder_inside_a_class_folder_error_names_it(class_root):
    (class_root / "a_circle" / "more").mkdir()
    with pytest.raises(DataError, match=r"a_circle[/\\]more: a folder inside class folder 'a_circle'"):
        load_class_folders(class_root)


def test_empty_class_folder_error_names_the_folder(class_root):
    (class_root / "c_empty").mkdir()
    with pytest.raises(DataError, match=r"shapes[/\\]c_empty: empty class folder"):
        load_class_folders(class_root)


def test_empty_root_error_names_the_root(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match=r"nothing: no class folders"):
        load_class_folders(tmp_path / "nothing")


def test_missing_root_error_names_the_root(tmp_path):
    with pytest.raises(DataError, match=r"not_there: folder not found"):
        load_class_folders(tmp_path / "not_there")


def test_gray_and_colour_files_with_channels_none_error_names_both(class_root):
    with pytest.raises(DataError, match=r"y\.jpg: has 3 channel\(s\) but .*x\.png has 1"):
        load_class_folders(class_root, PreprocessConfig(channels=None))


def test_loading_with_a_normalisation_other_than_unit_is_refused(class_root):
    with pytest.raises(ConfigError, match=r"normalise='symmetric' is not valid for loading a data set"):
        load_class_folders(class_root, PreprocessConfig(normalise="symmetric"))


# --- Omniglot ------------------------------------------------------------------------------------

def test_omniglot_splits_by_alphabet(omniglot_root):
    images = load_omniglot(omniglot_root, validation_alphabets=1)
    assert images.classes == ("Alpha/character01", "Alpha/character02", "Beta/character01",
                              "Beta/character02", "Gamma/character01", "Gamma/character02")
    assert images.alphabets == ("Alpha",) * 2 + ("Beta",) * 2 + ("Gamma",) * 2
    assert images.splits == ("background",) * 2 + ("validation",) * 2 + ("evaluation",) * 2
    assert images.class_counts().tolist() == [2] * 6 and images.images.shape == (12, 1, 28, 28)
    assert images.split("validation").classes == ("Beta/character01", "Beta/character02")


def test_omniglot_is_inverted_so_strokes_are_one(omniglot_root):
    images = load_omniglot(omniglot_root, validation_alphabets=1)
    first = images.images[0, 0]
    assert first[0, 0] == 0  # paper
    assert first.max() > 0.99 and first.mean() < 0.2  # a few stroke pixels
    not_inverted = load_omniglot(omniglot_root, validation_alphabets=1, invert=False)
    assert not_inverted.images[0, 0, 0, 0] == 1


def test_omniglot_validation_alphabets_zero_keeps_all_background(omniglot_root):
    images = load_omniglot(omniglot_root, validation_alphabets=0)
    assert images.splits.count("background") == 4 and "validation" not in images.splits


@pytest.mark.parametrize("count", [2, -1])
def test_omniglot_validation_alphabets_must_leave_a_background_alphabet(omniglot_root, count):
    with pytest.raises(ConfigError, match=rf"validation_alphabets={count} is not valid; .*has 2 alphabet"):
        load_omniglot(omniglot_root, validation_alphabets=count)


def test_omniglot_bare_alphabet_tree_is_all_background(omniglot_root):
    images = load_omniglot(omniglot_root / "images_background")
    assert images.alphabets == ("Alpha", "Alpha", "Beta", "Beta")
    assert set(images.splits) == {"background"}


def test_omniglot_alphabet_without_characters_error_names_it(omniglot_root):
    (omniglot_root / "images_evaluation" / "Delta").mkdir()
    with pytest.raises(DataError, match=r"images_evaluation[/\\]Delta: no character folders"):
        load_omniglot(omniglot_root, validation_alphabets=1)


def test_omniglot_skip_bad_reports_a_bad_drawing(omniglot_root):
    bad = truncated_png(omniglot_root / "images_evaluation" / "Gamma" / "character02" / "bad.png")
    report: list[SkippedFile] = []
    with pytest.warns(UserWarning, match=r"bad\.png"):
        images = load_omniglot(omniglot_root, validation_alphabets=1, skip_bad=True, report=report)
    assert report == [SkippedFile(str(bad), report[0].reason)] and "corrupt or truncated PNG" in report[0].reason
    assert images.class_counts().tolist() == [2] * 6


# --- layout detection ---------------------------------------------------------------------------

def test_layout_is_detected_for_all_three_shapes(omniglot_root, class_root):
    assert detect_layout(omniglot_root) == "omniglot"
    assert detect_layout(omniglot_root / "images_background") == "omniglot"
    assert detect_layout(class_root) == "class_folders"


def test_load_folder_dispatches_to_the_matching_loader(omniglot_root, class_root):
    assert load_folder(omniglot_root, validation_alphabets=1).name == "omniglot"
    assert load_folder(class_root).classes == ("a_circle", "b_square")


def test_folder_with_neither_layout_error_describes_both(tmp_path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"no images in a layout .*Omniglot .*one folder per class"):
        load_folder(tmp_path)


def test_load_folder_on_missing_root_names_it(tmp_path):
    with pytest.raises(DataError, match=r"missing_root: folder not found"):
        load_folder(tmp_path / "missing_root")


def test_omniglot_with_few_background_alphabets_keeps_one_in_background_by_default(omniglot_root):
    images = load_omniglot(omniglot_root)       # two background alphabets: one becomes validation
    assert sorted(set(zip(images.alphabets, images.splits))) == [
        ("Alpha", "background"), ("Beta", "validation"), ("Gamma", "evaluation")]


def test_load_turns_dark_ink_on_light_paper_into_bright_ink_like_the_glyphs(tmp_path):
    from metagen_utils.data import load

    for c in range(2):
        for i in range(2):
            stroke_png(tmp_path / "ink" / f"class{c}" / f"{i}.png", seed=i)     # black bars on white
    images = load(str(tmp_path / "ink"), 28)
    assert images.images.mean() < 0.5 and images.images.max() > 0.9, "paper 0, strokes near 1"
    inverted = load_class_folders(tmp_path / "ink", PreprocessConfig(size=28, channels=1, invert=True))
    np.testing.assert_allclose(images.images, inverted.images, atol=1e-6)
