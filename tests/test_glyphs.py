"""Tests of metagen_utils.data.glyphs: the embedded glyph set built, cached and checked against its manifest."""
import json

import numpy as np
import pytest

from metagen_utils.data import glyphs
from metagen_utils.errors import ConfigError, ManifestError


def test_default_set_has_over_a_thousand_classes_of_twenty_samples(glyph_set):
    assert glyph_set.num_classes >= 1000
    assert glyph_set.images.shape == (glyph_set.num_classes * 20, 1, 28, 28)
    assert np.all(glyph_set.class_counts() == 20)
    assert glyph_set.images.dtype == np.float32
    assert 0 <= glyph_set.images.min() and glyph_set.images.max() <= 1


def test_no_alphabet_crosses_splits():
    split_of = {}
    for c in glyphs.glyph_classes():
        assert split_of.setdefault(c.alphabet, c.split) == c.split
    assert {a for a, s in split_of.items() if s == "evaluation"} == set(glyphs.EVALUATION_ALPHABETS)
    assert {a for a, s in split_of.items() if s == "validation"} == set(glyphs.VALIDATION_ALPHABETS)


def test_classes_are_distinct_characters_drawn_by_enough_fonts():
    classes = glyphs.glyph_classes()
    assert len({c.codepoint for c in classes}) == len(classes)
    assert all(len(c.fonts) >= glyphs.MIN_FONTS for c in classes)


def test_same_seed_gives_byte_identical_samples_and_another_seed_does_not():
    cls = glyphs.glyph_classes()[123]
    a = glyphs.sample_class(cls, glyphs.GlyphSpec(seed=0))
    b = glyphs.sample_class(cls, glyphs.GlyphSpec(seed=0))
    c = glyphs.sample_class(cls, glyphs.GlyphSpec(seed=1))
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


@pytest.mark.parametrize("size", [28, 32, 64])
def test_sizes_28_32_and_64_build(size):
    classes = glyphs.glyph_classes()[:3]
    images, labels = glyphs.build(glyphs.GlyphSpec(image_size=size, samples_per_class=4), classes)
    assert images.shape == (12, 1, size, size) and images.dtype == np.uint8
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert all(img.max() > 128 for img in images[:, 0])  # every sample has ink


def test_distortions_add_within_class_variation_beyond_fonts():
    classes = glyphs.glyph_classes()[::97]
    def spread(d):
        imgs = np.stack([glyphs.sample_class(c, glyphs.GlyphSpec(distortions=d)) for c in classes]) / 255.0
        flat = imgs.reshape(len(classes), imgs.shape[1], -1)
        return float(np.mean([np.linalg.norm(f[:, None] - f[None], axis=-1).mean() for f in flat]))
    assert spread(glyphs.Distortions()) > 1.3 * spread(glyphs.Distortions.none())


def test_bad_image_size_is_refused_with_the_parameter_named():
    with pytest.raises(ConfigError, match="image_size=30"):
        glyphs.build(glyphs.GlyphSpec(image_size=30), glyphs.glyph_classes()[:1])


def test_default_set_matches_the_committed_manifest(glyph_set):
    images = np.round(glyph_set.images * 255).astype(np.uint8)
    assert glyphs.check_against_manifest(glyphs.GlyphSpec(), images, glyph_set.labels, "the default set")


def test_manifest_mismatch_is_an_error_naming_the_source(tmp_path):
    spec = glyphs.GlyphSpec(samples_per_class=2)
    images, labels = glyphs.build(spec, glyphs.glyph_classes())
    manifest = tmp_path / "manifest.json"
    entry = glyphs.manifest_entry(spec, images, labels)
    manifest.write_text(json.dumps({spec.key: entry}))
    assert glyphs.check_against_manifest(spec, images, labels, "x", manifest)
    images[0, 0, 0, 0] ^= 1
    with pytest.raises(ManifestError, match=r"my-cache\.npz does not match .*sha256"):
        glyphs.check_against_manifest(spec, images, labels, "my-cache.npz", manifest)


def test_damaged_cache_file_is_an_error_not_a_silent_rebuild(tmp_path):
    spec = glyphs.GlyphSpec()
    (tmp_path / f"{spec.key}.npz").write_bytes(b"not a zip file")
    with pytest.raises(ManifestError, match=f"{spec.key}.npz cannot be read"):
        glyphs.load_arrays(spec, cache_dir=tmp_path, progress=False)
