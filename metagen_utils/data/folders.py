"""Local data sets from disk, as :class:`~metagen_utils.data.ImageSet`.

Two layouts are read (file names are free, extensions are PNG, JPEG, BMP, TIFF or WebP):

* **Omniglot**: ``ROOT/images_background/<alphabet>/<character>/*.png`` and
  ``ROOT/images_evaluation/<alphabet>/<character>/*.png`` (as downloaded), or a single
  ``ROOT/<alphabet>/<character>/*.png`` tree.
* **One folder per class**: ``ROOT/<class>/*.png`` (gray or colour, any size).

Only class (character) folders are read file by file; files at the levels above them (a README, the
downloaded zip) are ignored, and so are hidden names (``.DS_Store``, ``.ipynb_checkpoints``).
"""
from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..config import check_choice
from .images import SPLITS, ImageSet
from ..errors import ConfigError, DataError
from .preprocess import PreprocessConfig, preprocess_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
OMNIGLOT_SPLIT_FOLDERS = ("images_background", "images_evaluation")
LAYOUTS_HELP = ("expected either Omniglot (ROOT/images_background/<alphabet>/<character>/*.png and "
                "ROOT/images_evaluation/…, or ROOT/<alphabet>/<character>/*.png) or one folder per class "
                f"(ROOT/<class>/*{{{','.join(IMAGE_EXTENSIONS)}}})")


class SkippedFile(NamedTuple):
    """A file left out by ``skip_bad=True``, with the reason (which names the file)."""

    path: str
    reason: str


class _ClassFolder(NamedTuple):
    folder: Path
    name: str
    alphabet: str
    split: str


def _require_folder(root: str | Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: is a file, not a folder; {LAYOUTS_HELP}")
    return root


def _visible(folder: Path) -> list[Path]:
    """Entries of ``folder`` by name, without hidden ones; sorted so labels do not depend on the disk."""
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def _subfolders(folder: Path) -> list[Path]:
    return [p for p in _visible(folder) if p.is_dir()]


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() for p in _visible(folder))


def _check_unit_range(cfg: PreprocessConfig) -> None:
    if cfg.normalise != "unit":
        raise ConfigError(f"normalise={cfg.normalise!r} is not valid for loading a data set: an ImageSet "
                          "holds images in [0, 1]; load with normalise='unit' and normalise batches later")


def _load(classes: list[_ClassFolder], cfg: PreprocessConfig, skip_bad: bool,
          report: list[SkippedFile] | None, name: str) -> ImageSet:
    """Read every class folder into one ImageSet; bad files raise, or are skipped and reported."""
    _check_unit_range(cfg)
    images: list[np.ndarray] = []
    labels: list[int] = []
    files: list[str] = []
    skipped: list[SkippedFile] = []

    def bad(path: Path, reason: str) -> None:
        if not skip_bad:
            raise DataError(reason)
        skipped.append(SkippedFile(str(path), reason))
        if report is not None:
            report.append(skipped[-1])  # as it happens, so a later error still leaves the report filled

    for label, cls in enumerate(classes):
        entries = _visible(cls.folder)
        if not entries:
            raise DataError(f"{cls.folder}: empty class folder; every class needs at least one image")
        before = len(images)
        for path in entries:
            if path.is_dir():
                bad(path, f"{path}: a folder inside class folder {cls.folder.name!r}; expected only "
                          "image files there")
            elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                bad(path, f"{path}: not an image file (extension {path.suffix!r}); expected one of "
                          f"{', '.join(IMAGE_EXTENSIONS)}")
            else:
                try:
                    image = preprocess_file(path, cfg)
                except DataError as err:
                    bad(path, str(err))
                    continue
                if images and image.shape != images[0].shape:
                    # only possible with channels=None: a gray file among colour ones, or the reverse
                    raise DataError(f"{path}: has {image.shape[0]} channel(s) but {files[0]} has "
                                    f"{images[0].shape[0]}; set PreprocessConfig(channels=1 or 3)")
                images.append(image)
                labels.append(label)
                files.append(str(path))
        if len(images) == before:
            names = ", ".join(p.name for p in entries)
            raise DataError(f"{cls.folder}: no readable image in this class folder; all of its entries "
                            f"were skipped as bad ({names})")

    if skipped:
        listed = "\n".join(f"  {s.reason}" for s in skipped[:10])
        more = f"\n  … and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        warnings.warn(f"{name}: skipped {len(skipped)} bad file(s):\n{listed}{more}", stacklevel=3)
    return ImageSet(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        classes=tuple(c.name for c in classes),
        alphabets=tuple(c.alphabet for c in classes),
        splits=tuple(c.split for c in classes),
        name=name,
        files=tuple(files),
    )


def load_class_folders(root: str | Path, cfg: PreprocessConfig = PreprocessConfig(), skip_bad: bool = False,
                       split: str = "background", report: list[SkippedFile] | None = None) -> ImageSet:
    """Load ``ROOT/<class>/<image>`` into an ImageSet, images ``[N, C, cfg.size, cfg.size]`` in [0, 1].

    Classes are the sub-folders of ``root`` sorted by name, all in ``split``; their alphabet is the
    root folder's name. ``cfg.invert`` is honoured (set it for dark-on-light drawings).
    A file in a class folder that is not an image (by extension), cannot be read, or is a sub-folder is
    a DataError naming it; with ``skip_bad=True`` it is left out instead, a warning lists it, and
    ``report`` (a list you pass in) receives one :class:`SkippedFile` per file left out.
    """
    root = _require_folder(root)
    check_choice("split", split, SPLITS)
    folders = _subfolders(root)
    if not folders:
        raise DataError(f"{root}: no class folders (the folder is empty or holds only files); "
                        f"expected ROOT/<class>/<image>")
    alphabet = root.resolve().name
    classes = [_ClassFolder(f, f.name, alphabet, split) for f in folders]
    return _load(classes, cfg, skip_bad, report, name=alphabet)


def _alphabet_classes(alphabet: Path, split: str) -> list[_ClassFolder]:
    characters = _subfolders(alphabet)
    if not characters:
        raise DataError(f"{alphabet}: no character folders; expected <alphabet>/<character>/<image>.png")
    return [_ClassFolder(c, f"{alphabet.name}/{c.name}", alphabet.name, split) for c in characters]


def load_omniglot(root: str | Path, cfg: PreprocessConfig = PreprocessConfig(), skip_bad: bool = False,
                  validation_alphabets: int | None = None, report: list[SkippedFile] | None = None,
                  invert: bool = True) -> ImageSet:
    """Load an Omniglot-layout folder into an ImageSet, images ``[N, C, cfg.size, cfg.size]`` in [0, 1].

    With ``ROOT/images_background`` and/or ``ROOT/images_evaluation``: background alphabets are split
    "background" except the last ``validation_alphabets`` by name, which are "validation" (splitting by
    alphabet, so validation scripts are unseen; None: 5, or one fewer than there are, so that one stays
    in the background); evaluation alphabets are "evaluation". A bare
    ``ROOT/<alphabet>/<character>/`` tree is all "background".
    Class names are ``"<alphabet>/<character>"``. Omniglot draws black strokes on white; ``invert``
    (default True, replacing ``cfg.invert``) makes strokes 1 and paper 0, as in the glyph set.
    ``skip_bad`` and ``report``: as in :func:`load_class_folders`.
    """
    root = _require_folder(root)
    background, evaluation = (root / name for name in OMNIGLOT_SPLIT_FOLDERS)
    if background.is_dir() or evaluation.is_dir():
        bg = _subfolders(background) if background.is_dir() else []
        if validation_alphabets is None:
            validation_alphabets = max(0, min(5, len(bg) - 1))
        if not isinstance(validation_alphabets, int) or validation_alphabets < 0 or (
                bg and validation_alphabets >= len(bg)):
            raise ConfigError(f"validation_alphabets={validation_alphabets!r} is not valid; {background} "
                              f"has {len(bg)} alphabet(s) and at least one must stay in background")
        n_train = len(bg) - validation_alphabets
        alphabets = [(a, "background" if i < n_train else "validation") for i, a in enumerate(bg)]
        if evaluation.is_dir():
            alphabets += [(a, "evaluation") for a in _subfolders(evaluation)]
    else:
        alphabets = [(a, "background") for a in _subfolders(root)]
    if not alphabets:
        raise DataError(f"{root}: no alphabet folders; {LAYOUTS_HELP}")
    classes = [c for alphabet, split in alphabets for c in _alphabet_classes(alphabet, split)]
    return _load(classes, replace(cfg, invert=invert), skip_bad, report, name="omniglot")


def detect_layout(root: str | Path) -> str:
    """``"omniglot"`` or ``"class_folders"`` (see the module docstring), or DataError naming ``root``."""
    root = _require_folder(root)
    if any((root / name).is_dir() for name in OMNIGLOT_SPLIT_FOLDERS):
        return "omniglot"
    folders = _subfolders(root)
    if any(_has_images(f) for f in folders):
        return "class_folders"
    if any(_has_images(c) for f in folders for c in _subfolders(f)):
        return "omniglot"
    raise DataError(f"{root}: no images in a layout the kit reads; {LAYOUTS_HELP}")


def load_folder(root: str | Path, cfg: PreprocessConfig = PreprocessConfig(), *, skip_bad: bool = False,
                report: list[SkippedFile] | None = None, validation_alphabets: int | None = None) -> ImageSet:
    """Detect the layout of ``root`` (:func:`detect_layout`) and load it with the matching loader."""
    if detect_layout(root) == "omniglot":
        return load_omniglot(root, cfg, skip_bad, validation_alphabets, report)
    return load_class_folders(root, cfg, skip_bad, report=report)

