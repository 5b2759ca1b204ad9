"""The embedded default data set, "glyphs": an Omniglot-like set drawn from the fonts inside matplotlib.

Nothing can be downloaded at run time, so the kit renders its own few-shot data set. A *class* is one
Unicode character, an *alphabet* its script (Latin, Greek, Georgian, Braille, …) or symbol block, and
splits are by alphabet as in Omniglot: Georgian, Armenian and Lao are never seen in meta-training.

A *sample* is the character drawn from one of the fonts that has it, then distorted the way a hand
distorts a letter: a random affine map (rotation, shear, anisotropic scale, shift), a stroke width
change, and an elastic warp at two scales. All randomness comes from a generator seeded by
``(seed, codepoint)``, so a class's samples do not depend on which other classes exist.

Built arrays are cached under ``data/glyphs/`` and checked against ``data/glyphs_manifest.json``: a
mismatch is an error, never a warning, because every number in the notebooks rests on these arrays.

One module of about 400 lines: rendering, distortions, the cache and its manifest check must agree on
the one ``GlyphSpec`` that names a glyph set, byte for byte.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import unicodedata
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .images import ImageSet
from ..errors import ConfigError, DataError, ManifestError
from ..files import write_atomic, write_json

FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansDisplay.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSerifDisplay.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
)
MIN_FONTS = 8  # a character must be drawn by at least this many fonts to have some variety of style

# Scripts named by the first word of a character's Unicode name.
SCRIPTS = ("LATIN", "GREEK", "CYRILLIC", "ARMENIAN", "GEORGIAN", "LAO", "BRAILLE")
# Symbols have no script; Unicode blocks group them instead (inclusive code point ranges).
SYMBOL_BLOCKS = (
    ("Arrows", ((0x2190, 0x21FF), (0x27F0, 0x27FF), (0x2900, 0x297F), (0x2B00, 0x2BFF))),
    ("Math operators", ((0x2200, 0x22FF), (0x27C0, 0x27EF), (0x2980, 0x2AFF))),
    ("Technical", ((0x2300, 0x23FF),)),
    ("Box drawing", ((0x2500, 0x257F),)),
    ("Block elements", ((0x2580, 0x259F),)),
    ("Geometric shapes", ((0x25A0, 0x25FF),)),
    ("Dingbats", ((0x2600, 0x27BF),)),
    ("Letterlike", ((0x2100, 0x218F),)),
)
# The fixed split, by alphabet. Evaluation scripts are never seen in meta-training or validation.
EVALUATION_ALPHABETS = ("Georgian", "Armenian", "Lao")
VALIDATION_ALPHABETS = ("Greek", "Geometric shapes")

DATA_DIR = Path(os.environ.get("METAGEN_DATA_DIR", Path(__file__).resolve().parents[2] / "data"))
MANIFEST = Path(__file__).resolve().parents[2] / "data" / "glyphs_manifest.json"


@dataclass(frozen=True)
class Distortions:
    """How far a sample may stray from its font's drawing. All ranges are uniform and symmetric.

    rotation (degrees), shear (x-shift per unit y), scale (log range, per axis with ``aspect`` apart),
    shift (fraction of the image), stroke (pixels of dilation/erosion at 2× resolution), elastic
    (displacement in pixels at 2× resolution: ``coarse`` on a 3×3 grid bends the whole letter,
    ``fine`` on a 6×6 grid makes strokes wobble as a pen does).
    """

    rotation: float = 12.0
    shear: float = 0.25
    scale: float = 0.12
    aspect: float = 0.10
    shift: float = 0.06
    stroke: int = 1
    elastic_coarse: float = 2.0
    elastic_fine: float = 0.8

    @staticmethod
    def none() -> "Distortions":
        """No distortion at all: samples differ only in font (what a font-only generator gives)."""
        return Distortions(0.0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0)


@dataclass(frozen=True)
class GlyphSpec:
    """What to build: the key of a cache file and of a manifest entry."""

    image_size: int = 28
    samples_per_class: int = 20
    seed: int = 0
    distortions: Distortions = Distortions()

    @property
    def key(self) -> str:
        tag = "" if self.distortions == Distortions() else "-d" + _digest(asdict(self.distortions))[:8]
        return f"glyphs-{self.image_size}px-{self.samples_per_class}x-seed{self.seed}{tag}"


@dataclass(frozen=True)
class GlyphClass:
    codepoint: int
    alphabet: str
    split: str
    fonts: tuple[int, ...]  # indices into FONT_FILES of the fonts that draw it

    @property
    def char(self) -> str:
        return chr(self.codepoint)

    @property
    def name(self) -> str:
        return f"U+{self.codepoint:04X} {unicodedata.name(self.char, '?')}"


def font_dir() -> Path:
    """matplotlib's bundled TrueType fonts (DejaVu and STIX, free licences: see data/README.md)."""
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def alphabet_of(codepoint: int) -> str:
    """The alphabet of a character: its script, its symbol block, or "Other symbols"."""
    first = unicodedata.name(chr(codepoint), "").split(" ")[0]
    if first in SCRIPTS:
        return first.capitalize()
    for name, ranges in SYMBOL_BLOCKS:
        if any(lo <= codepoint <= hi for lo, hi in ranges):
            return name
    return "Other symbols"


def split_of(alphabet: str) -> str:
    if alphabet in EVALUATION_ALPHABETS:
        return "evaluation"
    return "validation" if alphabet in VALIDATION_ALPHABETS else "background"


@lru_cache(maxsize=1)
def glyph_classes() -> tuple[GlyphClass, ...]:
    """Every class of the set, sorted by (split, alphabet, code point).

    A class is a letter, digit or symbol drawn by at least ``MIN_FONTS`` of the fonts. Precomposed
    characters (``é`` = ``e`` + accent) are left out: at 28×28 they are near-copies of their base letter.
    """
    from fontTools.ttLib import TTFont  # fontTools comes with matplotlib

    fonts_of: dict[int, list[int]] = {}
    for i, name in enumerate(FONT_FILES):
        path = font_dir() / name
        if not path.is_file():
            raise DataError(f"font file {path} is missing; the glyph set needs matplotlib's bundled fonts")
        for cp in TTFont(str(path), lazy=True).getBestCmap():
            fonts_of.setdefault(cp, []).append(i)
    classes = []
    for cp, fonts in fonts_of.items():
        ch = chr(cp)
        if len(fonts) < MIN_FONTS or unicodedata.category(ch)[0] not in "LNS" or unicodedata.decomposition(ch):
            continue
        if "BLANK" in unicodedata.name(ch, "") or cp >= 0xFFF0:  # blank patterns and specials have no ink
            continue
        alphabet = alphabet_of(cp)
        classes.append(GlyphClass(cp, alphabet, split_of(alphabet), tuple(fonts)))
    order = {"background": 0, "validation": 1, "evaluation": 2}
    return tuple(sorted(classes, key=lambda c: (order[c.split], c.alphabet, c.codepoint)))


@lru_cache(maxsize=32)
def _font(index: int, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / FONT_FILES[index]), size)


def render(codepoint: int, font_index: int, size: int) -> np.ndarray:
    """One character from one font, centred and scaled so its longer side fills 70 % of a ``size``² canvas.

    Returns uint8 ``[size, size]``, ink = 255. Scaling every glyph to the same box is what Omniglot's
    drawers did too: a full stop is drawn as large as a W.
    """
    big = 2 * size  # draw large, then shrink with INTER_AREA, so every glyph is equally antialiased
    canvas = Image.new("L", (2 * big, 2 * big), 0)
    ImageDraw.Draw(canvas).text((big, big), chr(codepoint), font=_font(font_index, big), fill=255, anchor="mm")
    ink = np.asarray(canvas)
    box = canvas.getbbox()
    if box is None:
        raise DataError(f"font {FONT_FILES[font_index]} draws nothing for U+{codepoint:04X}")
    ink = ink[box[1]:box[3], box[0]:box[2]]
    h, w = ink.shape
    fit = 0.70 * size / max(h, w)
    nh, nw = max(1, round(h * fit)), max(1, round(w * fit))
    small = cv2.resize(ink, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = small
    return out


def _smooth_field(rng: np.random.Generator, grid: int, size: int, amplitude: float) -> np.ndarray:
    """A random (dx, dy) displacement field ``[size, size, 2]``: Gaussian values on a ``grid``² lattice,
    bicubically upsampled so that neighbouring pixels move together, as a pen stroke bends."""
    coarse = rng.normal(0.0, amplitude, (grid, grid, 2)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


@lru_cache(maxsize=8)
def _centred_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (size - 1) / 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    return xs - c, ys - c


def distort(master: np.ndarray, rng: np.random.Generator, d: Distortions, out_size: int) -> np.ndarray:
    """One random handwriting-like variant of ``master`` (uint8 ``[S, S]`` at 2× resolution) → uint8 ``[out, out]``."""
    s = master.shape[0]
    img = master
    if d.stroke:
        k = int(rng.integers(-d.stroke, d.stroke + 1))
        if k:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(k) + 1, 2 * abs(k) + 1))
            img = cv2.dilate(img, kernel) if k > 0 else cv2.erode(img, kernel)
    # Inverse map: for each output pixel, where in the master it comes from.
    angle = np.deg2rad(rng.uniform(-d.rotation, d.rotation))
    log_scale = rng.uniform(-d.scale, d.scale)
    log_aspect = rng.uniform(-d.aspect, d.aspect)
    sx, sy = np.exp(log_scale + log_aspect), np.exp(log_scale - log_aspect)
    shear = rng.uniform(-d.shear, d.shear)
    shift = rng.uniform(-d.shift, d.shift, 2) * s
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sx, sy])
    inverse = np.linalg.inv(forward)  # remap asks, for each output pixel, where it comes from
    c = (s - 1) / 2.0
    xs, ys = _centred_grid(s)
    px, py = xs - shift[0], ys - shift[1]
    map_x = (inverse[0, 0] * px + inverse[0, 1] * py + c).astype(np.float32)
    map_y = (inverse[1, 0] * px + inverse[1, 1] * py + c).astype(np.float32)
    for grid, amplitude in ((3, d.elastic_coarse), (6, d.elastic_fine)):
        if amplitude:
            field = _smooth_field(rng, grid, s, amplitude)
            map_x += field[..., 0]
            map_y += field[..., 1]
    warped = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cv2.resize(warped, (out_size, out_size), interpolation=cv2.INTER_AREA)


def sample_class(cls: GlyphClass, spec: GlyphSpec, fonts: tuple[int, ...] | None = None) -> np.ndarray:
    """``spec.samples_per_class`` samples of one class, uint8 ``[n, size, size]``; fonts drawn at random."""
    rng = np.random.default_rng([spec.seed, cls.codepoint])
    fonts = cls.fonts if fonts is None else fonts
    picks = rng.choice(np.asarray(fonts), size=spec.samples_per_class)
    masters = {f: render(cls.codepoint, int(f), 2 * spec.image_size) for f in sorted(set(picks.tolist()))}
    return np.stack([distort(masters[int(f)], rng, spec.distortions, spec.image_size) for f in picks])


def build(spec: GlyphSpec = GlyphSpec(), classes: tuple[GlyphClass, ...] | None = None,
          progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Render the set: uint8 images ``[N, 1, H, W]`` and int64 labels ``[N]`` (class order of ``classes``)."""
    if spec.image_size < 16 or spec.image_size % 4:
        raise ConfigError(f"image_size={spec.image_size} is not valid; expected a multiple of 4, at least 16")
    if spec.samples_per_class < 2:
        raise ConfigError(f"samples_per_class={spec.samples_per_class} is not valid; expected at least 2")
    classes = glyph_classes() if classes is None else classes
    iterator = classes
    if progress:
        from tqdm.auto import tqdm

        from ..config import progress_disabled
        iterator = tqdm(classes, desc=f"rendering {spec.key}", disable=progress_disabled())
    images = np.stack([sample_class(c, spec) for c in iterator])[:, :, None]
    images = images.reshape(-1, 1, spec.image_size, spec.image_size)
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), spec.samples_per_class)
    return images, labels


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def fingerprint(images: np.ndarray, labels: np.ndarray) -> dict[str, str]:
    """sha256 of the built arrays' bytes, as recorded in the manifest."""
    return {"images": hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest(),
            "labels": hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()}


def manifest_entry(spec: GlyphSpec, images: np.ndarray, labels: np.ndarray) -> dict:
    classes = glyph_classes()
    counts: dict[str, dict[str, int]] = {}
    for c in classes:
        counts.setdefault(c.split, {}).setdefault(c.alphabet, 0)
        counts[c.split][c.alphabet] += 1
    return {
        "spec": {"image_size": spec.image_size, "samples_per_class": spec.samples_per_class,
                 "seed": spec.seed, "distortions": asdict(spec.distortions)},
        "shape": list(images.shape),
        "classes": len(classes),
        "classes_per_split_and_alphabet": counts,
        "class_list_sha256": _digest([[c.codepoint, c.alphabet, c.split] for c in classes]),
        "sha256": fingerprint(images, labels),
    }


def read_manifest(path: Path = MANIFEST) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); restore it with git") from e


def check_against_manifest(spec: GlyphSpec, images: np.ndarray, labels: np.ndarray, source: str,
                           path: Path = MANIFEST) -> bool:
    """Raise ManifestError if the manifest has an entry for ``spec`` and the arrays differ from it.

    Returns True if an entry was found and matched, False if the manifest has no entry for this spec.
    """
    entry = read_manifest(path).get(spec.key)
    if entry is None:
        return False
    found = manifest_entry(spec, images, labels)
    for field in ("class_list_sha256", "shape", "sha256"):
        if found[field] != entry[field]:
            raise ManifestError(
                f"{source} does not match {path.name} for {spec.key}: {field} is {found[field]}, "
                f"the manifest says {entry[field]}. The arrays were built by other package versions than "
                f"the pinned ones (requirements.lock) or the cache is damaged; delete {source} and rebuild "
                "in the kit's environment.")
    return True


def load_arrays(spec: GlyphSpec = GlyphSpec(), cache_dir: Path | None = None,
                progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The built arrays for ``spec``: from the cache if present, else built now and cached.

    Either way they are checked against the committed manifest when it has an entry for ``spec``.
    """
    cache_dir = DATA_DIR / "glyphs" if cache_dir is None else Path(cache_dir)
    path = cache_dir / f"{spec.key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                images, labels = z["images"], z["labels"]
        except Exception as e:  # zip or array errors all mean one thing: the cache is damaged
            raise ManifestError(f"cache file {path} cannot be read ({e}); delete it to rebuild") from e
        check_against_manifest(spec, images, labels, str(path))
        return images, labels
    images, labels = build(spec, progress=progress)
    check_against_manifest(spec, images, labels, f"the freshly built {spec.key}")
    write_atomic(path, lambda tmp: np.savez(open(tmp, "wb"), images=images, labels=labels))
    return images, labels


def load_glyphs(image_size: int = 28, samples_per_class: int = 20, seed: int = 0,
                distortions: Distortions = Distortions(), cache_dir: Path | None = None,
                progress: bool = True) -> ImageSet:
    """The glyph set as an :class:`ImageSet` (float32 in [0, 1], ink = 1), built and cached on first use."""
    spec = GlyphSpec(image_size, samples_per_class, seed, distortions)
    images, labels = load_arrays(spec, cache_dir, progress)
    classes = glyph_classes()
    return ImageSet(
        images=images.astype(np.float32) / 255.0,
        labels=labels,
        classes=tuple(c.name for c in classes),
        alphabets=tuple(c.alphabet for c in classes),
        splits=tuple(c.split for c in classes),
        name=spec.key,
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m metagen_utils.data.glyphs [--write-manifest] [--size N]``: build, time and check the set."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--size", type=int, nargs="+", default=[28])
    parser.add_argument("--write-manifest", action="store_true",
                        help="record the built arrays in data/glyphs_manifest.json (after a deliberate change)")
    args = parser.parse_args(argv)
    manifest = read_manifest()
    for size in args.size:
        spec = GlyphSpec(image_size=size)
        start = time.perf_counter()
        images, labels = build(spec, progress=True)
        seconds = time.perf_counter() - start
        print(f"{spec.key}: {images.shape[0]} images of {len(glyph_classes())} classes in {seconds:.1f} s")
        if args.write_manifest:
            manifest[spec.key] = manifest_entry(spec, images, labels)
        else:
            matched = check_against_manifest(spec, images, labels, f"the freshly built {spec.key}")
            print("  matches the manifest" if matched else "  (no manifest entry for this spec)")
    if args.write_manifest:
        write_json(MANIFEST, manifest)
        print(f"wrote {MANIFEST}")


if __name__ == "__main__":
    main()
