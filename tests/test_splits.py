"""metagen_utils.data.splits: which classes a run holds out, by default, by count or by name."""
import numpy as np
import pytest

from metagen_utils.data.images import ImageSet
from metagen_utils.data.splits import hold_out, held_out_summary
from metagen_utils.errors import ConfigError, DataError


def image_set(alphabets: dict[str, int], splits: dict[str, str] | None = None, per_class: int = 2) -> ImageSet:
    """``{alphabet: classes}``; every class background unless ``splits`` gives its alphabet a split."""
    names = [(a, f"{a}/c{j}") for a, n in alphabets.items() for j in range(n)]
    count = len(names) * per_class
    return ImageSet(images=np.zeros((count, 1, 4, 4), np.float32), labels=np.repeat(np.arange(len(names)), per_class),
                    classes=tuple(c for _, c in names), alphabets=tuple(a for a, _ in names),
                    splits=tuple((splits or {}).get(a, "background") for a, _ in names), name="tiny")


def split_alphabets(images: ImageSet) -> dict[str, list[str]]:
    return {s: sorted({a for a, t in zip(images.alphabets, images.splits) if t == s}) for s in set(images.splits)}


def test_a_set_with_its_own_splits_keeps_them():
    own = image_set({"A": 2, "B": 2, "C": 2}, {"B": "validation", "C": "evaluation"})
    assert hold_out(own).splits == own.splits


def test_a_class_per_folder_set_gets_seeded_disjoint_validation_and_evaluation_classes():
    folder = image_set({"shapes": 20})
    held = hold_out(folder, seed=3)
    assert [held.splits.count(s) for s in ("background", "validation", "evaluation")] == [14, 2, 4]
    assert hold_out(folder, seed=3).splits == held.splits, "one seed, one split"
    assert hold_out(folder, seed=4).splits != held.splits


def test_a_set_with_many_alphabets_holds_out_whole_alphabets():
    bare = image_set({name: 3 for name in "ABCDEFGHIJ"})
    held = split_alphabets(hold_out(bare, seed=0))
    assert (len(held["validation"]), len(held["evaluation"]), len(held["background"])) == (1, 2, 7)
    assert not set(held["validation"]) & set(held["evaluation"]), "an alphabet is in one split only"


def test_counts_and_names_choose_the_held_out_part_and_return_the_sets_own_to_background():
    own = image_set({"A": 2, "B": 2, "C": 2, "D": 2}, {"D": "evaluation"})
    named = hold_out(own, validation=["A"], evaluation=["B/c1", "C"])
    assert split_alphabets(named)["validation"] == ["A"]
    assert [c for c, s in zip(named.classes, named.splits) if s == "evaluation"] == ["B/c1", "C/c0", "C/c1"]
    assert "D" in split_alphabets(named)["background"], "the set's own evaluation classes went back"
    counted = split_alphabets(hold_out(own, validation=1, evaluation=2, seed=1))
    assert (len(counted["validation"]), len(counted["evaluation"])) == (1, 2)


def test_a_two_alphabet_set_holds_out_classes_once_a_whole_alphabet_would_empty_the_background():
    two = image_set({"Alpha": 4, "Beta": 4})
    held = hold_out(two, validation=1, evaluation=2, seed=0)
    assert held.splits.count("validation") == 4, "one whole alphabet, while the other stays"
    assert held.splits.count("evaluation") == 2 and held.splits.count("background") == 2, \
        "then classes of the alphabet left, two of them kept in the background"
    assert len({a for a, s in zip(held.alphabets, held.splits) if s != "validation"}) == 1


def test_a_folder_too_small_to_split_names_the_set_its_counts_and_the_need():
    with pytest.raises(DataError, match=r"tiny: 3 classes, 2 of them left in the background \(1 alphabet\(s\)\); "
                                        r"holding out 2 evaluation class\(es\) needs at least 3 there"):
        hold_out(image_set({"shapes": 3}), evaluation=2)


@pytest.mark.parametrize("request_, message", [(0, r"validation=0; expected a number"),
                                               ("A", r"validation='A'; expected a non-empty list"),
                                               ([], r"validation=\[\]; expected a non-empty list")])
def test_a_bad_request_is_refused_naming_the_parameter(request_, message):
    with pytest.raises(ConfigError, match=message):
        hold_out(image_set({"A": 2, "B": 2}), validation=request_)


def test_an_unknown_name_lists_the_alphabets_there_are():
    with pytest.raises(DataError, match=r"evaluation names 'Lao', which is neither an alphabet nor a class of it; "
                                        r"its alphabets are \['A', 'B'\]"):
        hold_out(image_set({"A": 2, "B": 2}), evaluation=["Lao"])


def test_the_summary_names_every_split_and_its_alphabets():
    held = hold_out(image_set({"A": 2, "B": 2, "C": 2}), validation=["B"], evaluation=["C"])
    assert held_out_summary(held).splitlines() == [
        "background      2 classes      4 images  A", "validation      2 classes      4 images  B",
        "evaluation      2 classes      4 images  C"]
