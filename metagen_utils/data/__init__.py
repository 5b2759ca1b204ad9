"""Images for every notebook (01 teaches them): one container, three sources, and K-shot episodes.

``images`` (:class:`ImageSet`, the splits), ``preprocess`` (OpenCV from file to array), ``glyphs`` (the
embedded data set), ``folders`` (Omniglot-layout and class-per-folder data), ``splits`` (choosing the
held-out classes of any set), ``episodes`` (K-shot tasks).
"""
from __future__ import annotations

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
    Omniglot or class-per-folder layout, preprocessed to gray ``image_size``² images.

        images = load()                       # the embedded glyphs, 28×28
        background = images.split("background")
    """
    if source == "glyphs":
        return load_glyphs(image_size, progress=progress)
    return load_folder(source, PreprocessConfig(size=image_size, channels=1))
