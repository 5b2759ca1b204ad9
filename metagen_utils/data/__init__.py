"""Images for every notebook (01 teaches them): one container, three sources, and K-shot episodes.

``images`` (:class:`ImageSet`, the splits), ``preprocess`` (OpenCV from file to array), ``glyphs`` (the
embedded data set), ``folders`` (Omniglot-layout and class-per-folder data), ``splits`` (choosing the
held-out classes of any set), ``episodes`` (K-shot tasks).
"""
from __future__ import annotations

from dataclasses import replace

from .episodes import Episode, EpisodeSampler
from .folders import load_folder
from .glyphs import load_glyphs
from .images import SPLITS, ImageSet
from .preprocess import PreprocessConfig
from .splits import hold_out

__all__ = ["SPLITS", "Episode", "EpisodeSampler", "ImageSet", "PreprocessConfig", "hold_out", "load", "load_folder",
           "load_glyphs"]


def load(source: str = "glyphs", image_size: int = 28, progress: bool = True) -> ImageSet:
    """The data set a notebook's ``DATA`` parameter names: the embedded glyphs, or a local folder in
    Omniglot or class-per-folder layout, preprocessed to gray ``image_size``² images with ink bright
    (ink 1, paper 0: a folder of dark ink on light paper is inverted).

        images = load()                       # the embedded glyphs, 28×28
        background = images.split("background")
    """
    if source == "glyphs":
        return load_glyphs(image_size, progress=progress)
    images = load_folder(source, PreprocessConfig(size=image_size, channels=1))
    # Every model of the series reads ink as 1 on paper 0, as the glyphs are drawn. A folder of dark
    # drawings on light paper (a mean above one half) is turned round to match.
    if images.images.mean() > 0.5:
        images = replace(images, images=1 - images.images)
    return images
