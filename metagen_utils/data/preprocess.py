"""OpenCV pipeline: load a file, convert it, resize it, normalise it, hand it to torch.

Every function works on NumPy HWC arrays (``[H, W, C]``, C = 1 for gray, 3 for RGB) because that is
the layout OpenCV uses; :func:`to_chw` / :func:`to_tensor` convert to torch's ``[C, H, W]`` at the very
end. :func:`load_image` returns float32 in [0, 1] whatever the file's bit depth, so the later steps
never have to ask "is this 0..255 or 0..65535?".
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..config import check_choice
from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

CHANNELS = (None, 1, 3)
RESIZE_MODES = ("crop", "pad")
NORMALISE_MODES = ("unit", "symmetric", "meanstd")
MEANSTD_NEEDS_STATS = "normalise='meanstd' needs mean and std (the training set's per-channel statistics)"

# First bytes of the formats OpenCV decodes, so that "not an image" and "a damaged image" get different
# messages. Formats not listed here (PGM, EXR, …) are still tried; they only get the generic message.
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP",
    b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"GIF8": "GIF",
}


def _require_hwc(img: object, where: str) -> np.ndarray:
    """Fail early, with the fix in the message, when a torch tensor (the source listing's bug) or a
    ``[C, H, W]`` array reaches a function that hands its argument to OpenCV."""
    torch = sys.modules.get("torch")  # if torch was never imported, ``img`` cannot be a tensor
    if torch is not None and isinstance(img, torch.Tensor):
        raise TypeError(f"{where}: expected a NumPy HWC array, got torch.Tensor; call .numpy() (and "
                        "permute [C, H, W] → [H, W, C]) or run this before to_tensor")
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{where}: expected a NumPy HWC array, got {type(img).__name__}")
    if img.ndim != 3 or img.shape[-1] > 4:
        hint = " (looks like [C, H, W]; use img.transpose(1, 2, 0))" if img.ndim == 3 else ""
        hint = " (add a channel axis with img[..., None])" if img.ndim == 2 else hint
        raise DataError(f"{where}: expected an [H, W, C] array with C ≤ 4, got shape {img.shape}{hint}")
    return img


def _read_and_decode(path: Path) -> np.ndarray:
    """The file's pixels as OpenCV decodes them (BGR order, native dtype), or DataError naming the file."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an image file")
    data = path.read_bytes()
    if not data:
        raise DataError(f"{path}: file is empty (0 bytes); re-copy or re-export it")
    kind = next((k for sig, k in _SIGNATURES.items() if data.startswith(sig)), None)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "WebP"
    # imdecode on the bytes read above is cv2.imread(str(path), cv2.IMREAD_UNCHANGED) without reading the
    # file twice, and it also works for non-ASCII paths on Windows, where cv2.imread fails.
    # A file OpenCV cannot decode gets a DataError below that names it; OpenCV's own warning on stderr
    # ("PNG input buffer is incomplete") would only repeat it, so its log is held at errors meanwhile.
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if pixels is None:
        if kind is None:
            raise DataError(f"{path}: not an image; its first bytes {data[:8]!r} match no format OpenCV "
                            "reads (PNG, JPEG, BMP, TIFF, WebP, …)")
        # The pinned OpenCV refuses a file cut short at any byte (tests/test_preprocess.py checks every cut
        # of a PNG and a JPEG), so no end-marker parser of our own is needed to catch truncation.
        raise DataError(f"{path}: corrupt or truncated {kind} file ({len(data)} bytes); OpenCV could not "
                        "decode it. Re-download or re-export it")
    return pixels


def load_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Read an image file as float32 RGB or gray in [0, 1], ``[H, W, C]``.

    * 8-bit files are divided by 255, 16-bit files by 65535: keeping float keeps all 16 bits, where
      squeezing to uint8 first would throw 8 of them away. Other depths (float or 32-bit TIFF) are refused.
    * OpenCV stores colour as **BGR** (historical: the Windows bitmaps and camera APIs it first served
      stored pixels that way); matplotlib, PIL and torchvision expect RGB, so colour is always converted
      to RGB here. Skipping this swaps red and blue without any error.
    * An alpha channel is composited onto **white**: transparent pixels of a stroke-on-white drawing
      (Omniglot style) must read as paper, not as black, which is what dropping alpha would give
      (transparent pixels usually store colour 0).
    * ``channels``: None keeps what the file has (1 or 3; alpha is gone after compositing); 1 converts
      colour to gray (BT.601 luma); 3 replicates gray into RGB. Result shape ``[H, W, channels]``.
    """
    check_channels(channels)
    path = Path(path)
    pixels = _read_and_decode(path)
    if pixels.dtype == np.uint8:
        img = pixels.astype(np.float32) / 255.0
    elif pixels.dtype == np.uint16:
        img = pixels.astype(np.float32) / 65535.0
    else:
        raise DataError(f"{path}: unsupported pixel type {pixels.dtype}; expected an 8- or 16-bit image")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:
        alpha = img[:, :, 3:]
        img = img[:, :, :3] * alpha + (1.0 - alpha)
    elif img.shape[2] not in (1, 3):
        raise DataError(f"{path}: {img.shape[2]} channels; expected gray, BGR or BGRA")
    if img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 1 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None]
    elif channels == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.clip(img, 0.0, 1.0, dtype=np.float32)  # compositing can round a hair past 1.0


def check_channels(channels: int | None) -> None:
    """ConfigError naming ``channels`` unless it is None (keep the file's), 1 (gray) or 3 (RGB)."""
    if channels not in CHANNELS or isinstance(channels, bool):
        raise ConfigError(f"channels={channels!r} is not valid; expected None (as in the file), "
                          "1 (gray) or 3 (RGB)")


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``[size, size, C]`` window of an ``[H, W, C]`` image with H, W ≥ size."""
    img = _require_hwc(img, "center_crop")
    h, w = img.shape[:2]
    if h < size or w < size:
        raise DataError(f"center_crop: image is {h}×{w}, smaller than the crop size {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return img[top:top + size, left:left + size]


def background_value(img: np.ndarray) -> np.ndarray:
    """Per-channel median of the outermost pixel ring, ``[C]``: what a picture's surroundings look like."""
    img = _require_hwc(img, "background_value")
    ring = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    return np.median(ring, axis=0).astype(img.dtype)


def pad_to_square(img: np.ndarray, value: float | np.ndarray | None = None) -> np.ndarray:
    """Pad ``[H, W, C]`` equally on both sides to ``[S, S, C]``, S = max(H, W).

    ``value`` None pads with :func:`background_value`, so padding a glyph or a photo does not add a
    black frame the model would have to learn to ignore.
    """
    img = _require_hwc(img, "pad_to_square")
    h, w, c = img.shape
    side = max(h, w)
    fill = background_value(img) if value is None else np.broadcast_to(np.asarray(value, img.dtype), (c,))
    out = np.empty((side, side, c), dtype=img.dtype)
    out[:] = fill
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = img
    return out


def resize_keep_aspect(img: np.ndarray, size: int, mode: str = "pad",
                       pad_value: float | np.ndarray | None = None) -> np.ndarray:
    """Resize ``[H, W, C]`` to ``[size, size, C]`` without stretching.

    ``crop`` scales the short side to ``size`` and cuts the centre (fills the frame, may lose the edges);
    ``pad`` scales the long side to ``size`` and pads with ``pad_value`` (default: the background, see
    :func:`pad_to_square`), keeping all of the content.
    Shrinking uses INTER_AREA, which averages all source pixels under each output pixel: it antialiases,
    where bilinear/nearest sample a few pixels and alias fine patterns (moiré, broken thin strokes).
    Enlarging uses INTER_CUBIC, smoother than bilinear; cubic overshoots at sharp edges, so the result is
    clipped back to the input's range (keeps a [0, 1] image in [0, 1]).
    """
    img = _require_hwc(img, "resize_keep_aspect")
    check_choice("mode", mode, RESIZE_MODES)
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"size={size!r} is not valid; expected a positive integer")
    h, w, c = img.shape
    if mode == "pad" and pad_value is None:
        pad_value = background_value(img)  # of the original, before resizing blurs the border
    scale = size / (min(h, w) if mode == "crop" else max(h, w))
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        resized = cv2.resize(img, (new_w, new_h), interpolation=interpolation)
        resized = resized.reshape(new_h, new_w, c)  # cv2 drops the channel axis of 1-channel images
        # cubic overshoots at edges, and even area averaging can land a rounding error past 1.0
        img = np.clip(resized, img.min(), img.max())
    # copy the crop: with no resampling it would otherwise be a view into the caller's array
    return center_crop(img, size).copy() if mode == "crop" else pad_to_square(img, pad_value)


def invert(img: np.ndarray) -> np.ndarray:
    """Swap ink and paper: ``1 - img`` for floats in [0, 1], ``max - img`` for integer images."""
    img = _require_hwc(img, "invert")
    if np.issubdtype(img.dtype, np.integer):
        return np.iinfo(img.dtype).max - img
    return 1.0 - img


def normalise(img: np.ndarray, mode: str = "unit", mean: float | tuple[float, ...] | None = None,
              std: float | tuple[float, ...] | None = None) -> np.ndarray:
    """Map a float ``[H, W, C]`` image in [0, 1] to the range a model expects, float32.

    ``unit``: unchanged, [0, 1] (Bernoulli / sigmoid outputs). ``symmetric``: [-1, 1] (tanh outputs).
    ``meanstd``: ``(img - mean) / std`` per channel; ``mean`` and ``std`` (one value or one per channel)
    are required, as they should be the training set's statistics, not the image's.
    """
    img = _require_hwc(img, "normalise").astype(np.float32)
    check_choice("normalise", mode, NORMALISE_MODES)
    if mode == "unit":
        return img
    if mode == "symmetric":
        return img * 2.0 - 1.0
    if mean is None or std is None:
        raise ConfigError(MEANSTD_NEEDS_STATS)
    mean_arr, std_arr = np.asarray(mean, np.float32).reshape(-1), np.asarray(std, np.float32).reshape(-1)
    for name, arr in (("mean", mean_arr), ("std", std_arr)):
        if arr.size not in (1, img.shape[2]):
            raise ConfigError(f"{name}={tuple(arr.tolist())} has {arr.size} values; the image has "
                              f"{img.shape[2]} channel(s)")
    if np.any(std_arr <= 0):
        raise ConfigError(f"std={tuple(std_arr.tolist())} is not valid; every value must be positive")
    return (img - mean_arr) / std_arr


def to_chw(img: np.ndarray) -> np.ndarray:
    """``[H, W, C]`` → contiguous float32 ``[C, H, W]``, the layout torch convolutions expect."""
    img = _require_hwc(img, "to_chw")
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """``[H, W, C]`` NumPy image → float32 ``torch.Tensor [C, H, W]`` (shares no memory with ``img``)."""
    import torch  # lazily: loading and resizing files does not need torch

    return torch.from_numpy(to_chw(img).copy())


@dataclass(frozen=True)
class PreprocessConfig:
    """How a file becomes a model input: ``[channels, size, size]`` float32.

    ``channels``: 1, 3 or None (as in the file). ``mode``: "pad" or "crop" (see
    :func:`resize_keep_aspect`). ``invert``: swap ink and paper. ``normalise``: "unit", "symmetric" or
    "meanstd" (then ``mean`` and ``std`` are required).
    """

    size: int = 28
    channels: int | None = 1
    mode: str = "pad"
    invert: bool = False
    normalise: str = "unit"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise ConfigError(f"size={self.size!r} is not valid; expected a positive integer")
        check_channels(self.channels)
        check_choice("mode", self.mode, RESIZE_MODES)
        check_choice("normalise", self.normalise, NORMALISE_MODES)
        if self.normalise == "meanstd" and (self.mean is None or self.std is None):
            raise ConfigError(MEANSTD_NEEDS_STATS)


def preprocess_file(path: str | Path, cfg: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Load → (invert) → resize → normalise one file: float32 ``[C, cfg.size, cfg.size]``."""
    img = load_image(path, cfg.channels)
    if cfg.invert:
        img = invert(img)  # before resizing, so that padding uses the inverted background
    img = resize_keep_aspect(img, cfg.size, cfg.mode)
    return to_chw(normalise(img, cfg.normalise, cfg.mean, cfg.std))
