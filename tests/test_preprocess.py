"""The OpenCV pipeline: files of every depth and layout, the resize rules, and the errors for bad files."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from metagen_utils.errors import ConfigError, DataError
from metagen_utils.data.preprocess import (PreprocessConfig, center_crop, invert, load_image, normalise,
                                      pad_to_square, preprocess_file, resize_keep_aspect, to_chw, to_tensor)


def write(path, pixels, *params):
    assert cv2.imwrite(str(path), pixels, list(params))
    return path


def encoded(ext, pixels):
    ok, buf = cv2.imencode(ext, pixels)
    assert ok
    return buf.tobytes()


def noise(h, w, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


# --- loading: depths, channel layouts, colour order -------------------------------------------------

def test_8bit_gray_file_loads_as_float32_hw1_in_unit_range(tmp_path):
    gray = np.array([[0, 128, 255]], dtype=np.uint8)
    img = load_image(write(tmp_path / "g.png", gray))
    assert img.dtype == np.float32 and img.shape == (1, 3, 1)
    np.testing.assert_allclose(img[0, :, 0], [0, 128 / 255, 1], rtol=1e-6)


def test_16bit_gray_file_keeps_all_16_bits(tmp_path):
    gray16 = np.array([[0, 1, 257 * 100, 65535]], dtype=np.uint16)
    img = load_image(write(tmp_path / "g16.png", gray16))
    # 1/65535 would become 0 if the file were squeezed through uint8 first
    np.testing.assert_allclose(img[0, :, 0], [0, 1 / 65535, 100 / 255, 1], rtol=1e-6)
    assert img[0, 1, 0] > 0


def test_16bit_colour_file_is_scaled_and_converted_to_rgb(tmp_path):
    bgr16 = np.zeros((2, 2, 3), np.uint16)
    bgr16[..., 2] = 65535  # red, in OpenCV's BGR order
    img = load_image(write(tmp_path / "red16.png", bgr16))
    np.testing.assert_allclose(img[0, 0], [1, 0, 0])


def test_bgr_file_loads_as_rgb(tmp_path):
    red = np.zeros((4, 6, 3), np.uint8)
    red[..., 2] = 255
    img = load_image(write(tmp_path / "red.png", red))
    assert img.shape == (4, 6, 3)
    np.testing.assert_array_equal(img[2, 3], [1.0, 0.0, 0.0])


def test_bgra_transparent_pixels_composite_onto_white(tmp_path):
    bgra = np.zeros((1, 3, 4), np.uint8)  # pixel 0: fully transparent black
    bgra[0, 1] = (255, 0, 0, 255)  # opaque blue
    bgra[0, 2] = (0, 0, 255, 51)  # red at 20 % opacity
    img = load_image(write(tmp_path / "alpha.png", bgra))
    assert img.shape == (1, 3, 3)
    np.testing.assert_allclose(img[0, 0], [1, 1, 1])
    np.testing.assert_allclose(img[0, 1], [0, 0, 1])
    np.testing.assert_allclose(img[0, 2], [1, 0.8, 0.8], atol=1e-6)


def test_channels_1_converts_colour_to_luma(tmp_path):
    green = np.zeros((2, 2, 3), np.uint8)
    green[..., 1] = 255
    img = load_image(write(tmp_path / "green.png", green), channels=1)
    assert img.shape == (2, 2, 1)
    np.testing.assert_allclose(img[..., 0], 0.587, atol=2e-3)  # BT.601 weight of green


def test_channels_3_replicates_gray(tmp_path):
    img = load_image(write(tmp_path / "g.png", np.full((3, 5), 51, np.uint8)), channels=3)
    assert img.shape == (3, 5, 3)
    np.testing.assert_allclose(img, 0.2)


@pytest.mark.parametrize("name, pixels, expected_c", [
    ("gray.png", np.zeros((5, 7), np.uint8), 1),
    ("colour.jpg", noise(5, 7), 3),
    ("alpha.png", noise(5, 7, 4), 3),
])
def test_channels_none_keeps_what_the_file_has(tmp_path, name, pixels, expected_c):
    assert load_image(write(tmp_path / name, pixels)).shape == (5, 7, expected_c)


@pytest.mark.parametrize("channels", [0, 2, 4, "rgb"])
def test_channels_other_than_none_1_3_error_names_the_parameter(tmp_path, channels):
    path = write(tmp_path / "g.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ConfigError, match=f"channels={channels!r} is not valid"):
        load_image(path, channels=channels)


def test_jpeg_with_bytes_after_the_end_marker_still_loads(tmp_path):
    path = tmp_path / "motion.jpg"
    path.write_bytes(encoded(".jpg", noise(8, 8)) + b"\x00\x01appended video" * 50)
    assert load_image(path).shape == (8, 8, 3)


# --- bad files: every message names the file ------------------------------------------------------

def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.png: file not found"):
        load_image(tmp_path / "nothere.png")


def test_zero_byte_file_error_names_the_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png: file is empty \(0 bytes\)"):
        load_image(tmp_path / "empty.png")


@pytest.mark.parametrize("ext, kind", [(".png", "PNG"), (".jpg", "JPEG")])
def test_a_file_cut_short_at_any_byte_is_refused_with_its_name(tmp_path, ext, kind):
    # OpenCV alone refuses every cut (no end-marker parser of the kit's): checked at every length
    data = encoded(ext, noise(20, 20))
    for keep in range(1, len(data)):
        assert cv2.imdecode(np.frombuffer(data[:keep], np.uint8), cv2.IMREAD_UNCHANGED) is None, keep
    (tmp_path / f"cut{ext}").write_bytes(data[:int(len(data) * 0.99)])
    with pytest.raises(DataError, match=rf"cut\{ext}: corrupt or truncated {kind} file \(\d+ bytes\)"):
        load_image(tmp_path / f"cut{ext}")


def test_corrupt_png_data_error_names_the_file(tmp_path):
    data = bytearray(encoded(".png", noise(20, 20, 1)))
    data[data.find(b"IDAT") + 20] ^= 0xFF  # damaged pixels, file length intact
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"bad\.png: corrupt or truncated PNG file"):
        load_image(tmp_path / "bad.png")


def test_text_file_error_says_it_is_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("these are notes, not pixels")
    with pytest.raises(DataError, match=r"notes\.png: not an image"):
        load_image(tmp_path / "notes.png")


def test_folder_path_error_names_the_folder(tmp_path):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(DataError, match=r"dir\.png: is a folder"):
        load_image(tmp_path / "dir.png")


def test_torch_tensor_input_error_says_what_to_do():
    with pytest.raises(TypeError, match=r"expected a NumPy HWC array, got torch\.Tensor; call \.numpy\(\)"):
        resize_keep_aspect(torch.zeros(28, 28, 1), 14)


def test_chw_array_input_error_suggests_transpose():
    with pytest.raises(DataError, match=r"got shape \(1, 28, 28\).*transpose\(1, 2, 0\)"):
        pad_to_square(np.zeros((1, 28, 28), np.float32))


# --- resizing ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["crop", "pad"])
@pytest.mark.parametrize("shape", [(105, 105, 1), (30, 70, 3), (70, 30, 1), (5, 9, 3)])
def test_resize_gives_size_square_for_any_shape(mode, shape):
    out = resize_keep_aspect(np.random.default_rng(0).random(shape, np.float32), 28, mode)
    assert out.shape == (28, 28, shape[2]) and out.dtype == np.float32


def test_area_downscale_of_checkerboard_averages_to_half():
    board = (np.indices((90, 90)).sum(0) % 2).astype(np.float32)[:, :, None]
    out = resize_keep_aspect(board, 28, "pad")
    # bilinear would alias here (values from 0.07 to 0.93); area averaging gives ~0.5 everywhere
    assert np.abs(out - 0.5).max() < 0.05


def test_cubic_upscale_is_clipped_to_the_input_range():
    edge = np.zeros((6, 6, 1), np.float32)
    edge[:, 3:] = 1
    assert cv2.resize(edge, (30, 30), interpolation=cv2.INTER_CUBIC).max() > 1.05  # cubic overshoots
    out = resize_keep_aspect(edge, 30, "crop")
    assert out.min() == 0 and out.max() == 1
    assert 0 < out[15, 14, 0] < 1  # smooth, not nearest-neighbour


def test_pad_keeps_the_aspect_ratio_and_centres_the_content():
    wide = np.ones((20, 40, 1), np.float32)
    out = resize_keep_aspect(wide, 28, "pad", pad_value=0.0)
    rows, cols = np.nonzero(out[..., 0] > 0.5)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (7, 21, 0, 28)


def test_pad_default_value_is_the_background_not_black():
    drawing = np.ones((30, 60, 1), np.float32)  # white paper …
    drawing[10:20, 25:35] = 0  # … with a black square
    out = resize_keep_aspect(drawing, 28, "pad")
    assert np.all(out[:7] == 1) and np.all(out[21:] == 1)
    assert out[14, 14, 0] < 0.1


def test_crop_keeps_the_centre_and_cuts_the_long_side():
    columns = np.tile(np.arange(40, dtype=np.float32), (20, 1))[:, :, None]
    out = resize_keep_aspect(columns, 20, "crop")  # short side already 20: no resampling
    np.testing.assert_array_equal(out[0, :, 0], np.arange(10, 30))


def test_center_crop_smaller_image_error_gives_both_sizes():
    with pytest.raises(DataError, match=r"image is 10×12, smaller than the crop size 28"):
        center_crop(np.zeros((10, 12, 1), np.float32), 28)


def test_pad_to_square_with_explicit_value():
    out = pad_to_square(np.zeros((2, 4, 3), np.float32), value=0.25)
    assert out.shape == (4, 4, 3)
    assert np.all(out[0] == 0.25) and np.all(out[1:3] == 0)


# --- values and layout ------------------------------------------------------------------------------

def test_invert_swaps_ink_and_paper():
    np.testing.assert_allclose(invert(np.array([[[0.0], [0.25], [1.0]]], np.float32))[0, :, 0], [1, 0.75, 0])
    np.testing.assert_array_equal(invert(np.array([[[0], [255]]], np.uint8))[0, :, 0], [255, 0])


def test_normalise_unit_and_symmetric_ranges():
    img = np.array([[[0.0], [0.5], [1.0]]], np.float32)
    np.testing.assert_allclose(normalise(img, "unit")[0, :, 0], [0, 0.5, 1])
    np.testing.assert_allclose(normalise(img, "symmetric")[0, :, 0], [-1, 0, 1])


def test_normalise_meanstd_is_per_channel():
    img = np.full((2, 2, 3), 0.5, np.float32)
    out = normalise(img, "meanstd", mean=(0.5, 0.25, 0.0), std=(1.0, 0.5, 0.25))
    np.testing.assert_allclose(out[0, 0], [0.0, 0.5, 2.0])


@pytest.mark.parametrize("kwargs, message", [
    ({}, r"normalise='meanstd' needs mean and std"),
    ({"mean": (0.5, 0.5), "std": 1.0}, r"mean=\(0.5, 0.5\) has 2 values; the image has 3 channel"),
    ({"mean": 0.5, "std": (1.0, 0.0, 1.0)}, r"std=\(1.0, 0.0, 1.0\) is not valid; every value must be"),
])
def test_normalise_meanstd_bad_statistics_error_names_them(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        normalise(np.zeros((2, 2, 3), np.float32), "meanstd", **kwargs)


def test_unknown_normalise_mode_error_lists_the_choices():
    with pytest.raises(ConfigError, match=r"normalise='zscore' is not valid; expected one of 'unit'"):
        normalise(np.zeros((2, 2, 1), np.float32), "zscore")


def test_to_chw_and_to_tensor_move_channels_first():
    img = np.random.default_rng(1).random((4, 5, 3)).astype(np.float64)
    chw = to_chw(img)
    assert chw.shape == (3, 4, 5) and chw.dtype == np.float32 and chw.flags.c_contiguous
    assert chw[2, 1, 4] == np.float32(img[1, 4, 2])
    tensor = to_tensor(img)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    torch.testing.assert_close(tensor, torch.from_numpy(chw))


# --- the whole pipeline ----------------------------------------------------------------------------

def test_preprocess_config_rejects_unknown_mode():
    with pytest.raises(ConfigError, match=r"mode='stretch' is not valid"):
        PreprocessConfig(mode="stretch")


def test_preprocess_file_inverted_omniglot_style_strokes_become_one(tmp_path):
    page = np.full((105, 105), 255, np.uint8)
    page[40:65, 50:62] = 0  # a black stroke on white, 3 output pixels wide
    out = preprocess_file(write(tmp_path / "char.png", page), PreprocessConfig(invert=True))
    assert out.shape == (1, 28, 28) and out.dtype == np.float32
    assert out[0, 0, 0] == 0 and out.max() > 0.95
    assert out[0, 14, 14] > 0.95  # the stroke's centre


def test_preprocess_file_colour_non_square_symmetric(tmp_path):
    path = write(tmp_path / "photo.jpg", noise(30, 50))
    out = preprocess_file(path, PreprocessConfig(size=32, channels=3, mode="crop", normalise="symmetric"))
    assert out.shape == (3, 32, 32)
    assert -1 <= out.min() < 0 < out.max() <= 1
