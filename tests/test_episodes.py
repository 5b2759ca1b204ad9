"""Tests of metagen_utils.data.episodes: K-shot episodes traced back to their images, seeds, and errors."""
import numpy as np
import pytest
import torch

from metagen_utils.data.images import ImageSet
from metagen_utils.errors import ConfigError, DataError
from metagen_utils.data.episodes import EpisodeSampler, require_images_per_class


def tiny_set(counts=(6, 6, 6, 6), splits=None):
    """Images whose pixel value encodes their row number, so a task's images can be traced back."""
    n = sum(counts)
    images = (np.arange(n, dtype=np.float32) / n).reshape(n, 1, 1, 1) * np.ones((1, 1, 2, 2), np.float32)
    labels = np.repeat(np.arange(len(counts)), counts)
    k = len(counts)
    return ImageSet(images, labels, tuple(f"c{i}" for i in range(k)), ("A",) * k,
                    tuple(splits or ["background"] * k), name="tiny")


def test_episode_shapes_follow_tasks_k_c_h_w(glyph_set):
    episode = EpisodeSampler(glyph_set.split("background"), k_shot=5, n_query=3, seed=0).sample(16)
    assert episode.support.shape == (16, 5, 1, 28, 28)
    assert episode.query.shape == (16, 3, 1, 28, 28)
    assert episode.support.dtype == torch.float32


def test_sampler_never_puts_an_image_in_support_and_query():
    sampler = EpisodeSampler(tiny_set((5, 7, 6)), k_shot=2, n_query=3, n_way=2, seed=1)
    for _ in range(50):
        e = sampler.sample(8)
        for t in range(8):
            s, q = set(e.support_index[t].tolist()), set(e.query_index[t].tolist())
            assert not s & q
            assert len(s) == 4 and len(q) == 6  # no image twice within a task either


def test_images_belong_to_the_classes_the_episode_names():
    data = tiny_set((5, 7, 6, 9))
    e = EpisodeSampler(data, k_shot=2, n_query=2, n_way=3, seed=0).sample(20)
    for t in range(20):
        expected = e.classes[t][e.support_labels[t]].numpy()
        assert np.array_equal(data.labels[e.support_index[t].numpy()], expected)
        assert len(set(e.classes[t].tolist())) == 3
        assert torch.equal(e.support[t], torch.from_numpy(data.images[e.support_index[t].numpy()]))


def test_same_seed_gives_the_same_tasks_and_another_seed_does_not():
    data = tiny_set()
    a = EpisodeSampler(data, 2, 2, seed=3).sample(10)
    b = EpisodeSampler(data, 2, 2, seed=3).sample(10)
    c = EpisodeSampler(data, 2, 2, seed=4).sample(10)
    assert torch.equal(a.support_index, b.support_index) and torch.equal(a.query, b.query)
    assert not torch.equal(a.support_index, c.support_index)


def test_no_class_of_another_split_is_ever_sampled(glyph_set):
    evaluation = glyph_set.split("evaluation")
    e = EpisodeSampler(evaluation, 1, 1, n_way=5, seed=0).sample(200)
    alphabets = {evaluation.alphabets[c] for c in e.classes.flatten().tolist()}
    assert alphabets <= {"Georgian", "Armenian", "Lao"}


def test_every_image_of_a_class_gets_drawn_eventually():
    data = tiny_set((4, 9))
    e = EpisodeSampler(data, 1, 1, seed=0).sample(500)
    seen = set(e.support_index.flatten().tolist()) | set(e.query_index.flatten().tolist())
    assert seen == set(range(13))


def test_fewer_images_than_shots_is_an_error_naming_the_class():
    with pytest.raises(DataError, match=r"tiny: 1 class\(es\) have fewer images than the 4 requested for "
                                        r"k_shot=2 \+ n_query=2: class 'c1' has 3"):
        EpisodeSampler(tiny_set((6, 3, 6)), k_shot=2, n_query=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"k_shot": 0, "n_query": 1}, "k_shot=0"),
    ({"k_shot": 1, "n_query": -1}, "n_query=-1"),
    ({"k_shot": 1, "n_query": 1, "n_way": 9}, "n_way=9 but tiny has only 4 classes"),
])
def test_bad_episode_settings_are_refused_by_name(kwargs, message):
    with pytest.raises((ConfigError, DataError), match=message):
        EpisodeSampler(tiny_set(), **kwargs)


def test_require_images_per_class_lists_the_short_classes():
    images = tiny_set((2, 3, 1))
    require_images_per_class(images, 1, "1-shot")
    with pytest.raises(DataError, match=r"^tiny: 2 class\(es\) have fewer images than the 3 requested "
                                        r"for 2-shot \+ 1 query: class 'c0' has 2; class 'c2' has 1$"):
        require_images_per_class(images, 3, "2-shot + 1 query")


def test_require_images_per_class_rejects_a_non_positive_count():
    with pytest.raises(ConfigError, match=r"needed=0 is not valid"):
        require_images_per_class(tiny_set(), 0, "nothing")
