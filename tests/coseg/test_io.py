"""coseg.data.io: image decoding in every colour form, mask encodings accepted and rejected, errors naming files."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
from PIL import Image

from coseg.data.io import (
    ImageReadError, MaskError, fit_to_mask, printable, read_image, read_image_for_size, read_mask, read_pair,
    write_png_atomic,
)
from tests.coseg.files import half_mask, left_red_image, write_cv2, write_exif_jpeg, write_palette, write_pil, write_rgb

ODD_NAME = os.fsdecode(b"caf\xc3\xa9 \xff odd, 'name'!")  # UTF-8 é, then a byte that is not UTF-8


def close(a: np.ndarray, b: np.ndarray, tol: float = 8.0) -> bool:
    """Same shape and mean absolute difference within ``tol`` (JPEG blurs colour edges)."""
    return a.shape == b.shape and float(np.abs(a.astype(float) - b.astype(float)).mean()) <= tol


# --- images -------------------------------------------------------------------------------------------------------


def test_rgb_png_roundtrip_in_rgb_order(tmp_path):
    rgb = left_red_image()
    image = read_image(write_rgb(tmp_path / "a.png", rgb))
    assert image.dtype == np.uint8 and image.shape == (12, 16, 3)
    np.testing.assert_array_equal(image, rgb)


def test_non_utf8_file_name(tmp_path):
    path = write_rgb(tmp_path / f"{ODD_NAME}.jpg", left_red_image())
    assert close(read_image(path), left_red_image())


def test_printable_escapes_control_characters_and_undecodable_bytes(tmp_path):
    name = os.fsdecode(b"two\nlines\tand \x1b[31mred\x7f \xc2\x85 caf\xc3\xa9 \xff.jpg")
    assert printable(name) == "two\\x0alines\\x09and \\x1b[31mred\\x7f \\x85 caf\u00e9 \\xff.jpg"
    path = tmp_path / name
    path.write_bytes(b"not an image")
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert "\n" not in str(info.value) and printable(path) in str(info.value)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    image = read_image(write_cv2(tmp_path / "g.png", gray))
    assert image.shape == (12, 16, 3)
    for c in range(3):
        np.testing.assert_array_equal(image[..., c], gray)


def test_rgba_drops_alpha(tmp_path):
    rgba = np.zeros((12, 16, 4), np.uint8)
    rgba[..., :3] = left_red_image()
    rgba[..., 3] = 0  # fully transparent: the colours are still the image
    image = read_image(write_pil(tmp_path / "a.png", Image.fromarray(rgba, "RGBA")))
    np.testing.assert_array_equal(image, left_red_image())


def test_16_bit_scaled_to_8_bit(tmp_path):
    deep = np.array([[0, 0x1234, 0xFFFF, 0x8000]], np.uint16)
    image = read_image(write_cv2(tmp_path / "d.png", deep))
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, :, 0], [0, 0x12, 0xFF, 0x80])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = write_pil(tmp_path / "c.jpg", Image.fromarray(left_red_image()).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    assert close(read_image(path), left_red_image())


@pytest.mark.parametrize("orientation, turn", [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_applied_like_a_viewer(tmp_path, orientation, turn):
    rgb = left_red_image()
    path = write_exif_jpeg(tmp_path / "e.jpg", rgb, orientation)
    assert close(read_image(path), np.rot90(rgb, turn))
    assert close(read_image(path, apply_exif=False), rgb)


@pytest.mark.parametrize("content, problem", [
    (b"", "empty file"),
    (b"this is text, not a JPEG\n", "not a decodable image"),
    (b"\xff\xd8\xff\xe0 garbage", "not a decodable image"),
])
def test_unreadable_files_name_the_file(tmp_path, content, problem):
    path = tmp_path / f"{ODD_NAME}.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=problem) as info:
        read_image(path)
    assert info.value.path == path
    assert printable(path) in str(info.value) and "\\xff" in str(info.value)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_files_raise(tmp_path, suffix, keep):
    rng = np.random.default_rng(0)
    full = write_rgb(tmp_path / f"full{suffix}", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(full[: int(len(full) * keep)])
    with pytest.raises(ImageReadError, match="cut"):
        read_image(path)


def test_header_of_a_decompression_bomb_is_a_one_line_error(tmp_path):
    """A JPEG whose header claims 40,000 x 30,000 pixels: beyond OpenCV's limit, refused before decoding."""
    data = bytearray(write_rgb(tmp_path / "small.jpg", left_red_image(16, 16)).read_bytes())
    frame = data.find(b"\xff\xc0") + 5  # start of frame: precision, then height and width
    data[frame:frame + 4] = (40_000).to_bytes(2, "big") + (30_000).to_bytes(2, "big")
    (tmp_path / "bomb.jpg").write_bytes(bytes(data))
    for read in (read_image, lambda path: read_image_for_size(path, 224)):
        with pytest.raises(ImageReadError, match="bomb.jpg: OpenCV cannot decode it .*MAX_IMAGE_PIXELS") as info:
            read(tmp_path / "bomb.jpg")
        assert "\n" not in str(info.value) and ".cpp" not in str(info.value)


def test_missing_file_raises_image_read_error(tmp_path):
    with pytest.raises(ImageReadError, match="nope.jpg.*cannot read"):
        read_image(tmp_path / "nope.jpg")


def test_truncation_found_after_an_embedded_thumbnail(tmp_path):
    """A thumbnail's end marker inside a metadata segment does not hide that the main image is cut off."""
    full = write_rgb(tmp_path / "full.jpg", np.full((64, 64, 3), 90, np.uint8)).read_bytes()
    payload = b"\xff\xd8\xff\xda thumbnail \xff\xd9"
    segment = b"\xff\xef" + (len(payload) + 2).to_bytes(2, "big") + payload  # APP15, ignored by decoders
    with_thumb = full[:2] + segment + full[2:]
    (tmp_path / "ok.jpg").write_bytes(with_thumb)
    assert read_image(tmp_path / "ok.jpg").shape == (64, 64, 3)
    (tmp_path / "cut.jpg").write_bytes(with_thumb[:-2])
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")


def test_data_appended_after_the_end_of_image_is_not_a_truncation(tmp_path):
    """A phone's motion photo: a video follows the JPEG's end-of-image marker, and its bytes may hold any marker."""
    full = write_rgb(tmp_path / "full.jpg", left_red_image(64, 64)).read_bytes()
    path = tmp_path / "motion.jpg"
    path.write_bytes(full + b"\x00\x00\x00\x18ftypmp42 \xff\xda\x00\x08 video frames")
    assert close(read_image(path), left_red_image(64, 64))
    image, size = read_image_for_size(path, 8)
    assert size == (64, 64) and image.shape == (8, 8, 3)


# --- masks --------------------------------------------------------------------------------------------------------


def grey(mask: np.ndarray, fg: int, dtype=np.uint8) -> np.ndarray:
    return (mask * fg).astype(dtype)


ACCEPTED = {
    "1-bit": lambda p, m: write_pil(p, Image.fromarray(m)),
    "8-bit 0/255": lambda p, m: write_cv2(p, grey(m, 255)),
    "8-bit 0/1": lambda p, m: write_cv2(p, grey(m, 1)),
    "16-bit 0/65535": lambda p, m: write_cv2(p, grey(m, 65535, np.uint16)),
    "palette 0/1": lambda p, m: write_palette(p, grey(m, 1)),
    "palette 0/3": lambda p, m: write_palette(p, grey(m, 3)),
    "RGB black/white": lambda p, m: write_cv2(p, np.repeat(grey(m, 255)[..., None], 3, axis=2)),
    "RGBA opaque": lambda p, m: write_pil(p, Image.fromarray(
        np.dstack([np.repeat(grey(m, 255)[..., None], 3, axis=2), np.full(m.shape, 255, np.uint8)]), "RGBA")),
    "LA opaque": lambda p, m: write_pil(p, Image.fromarray(
        np.dstack([grey(m, 255), np.full(m.shape, 255, np.uint8)]), "LA")),
    "BMP": lambda p, m: write_cv2(p.with_suffix(".bmp"), grey(m, 255), ".bmp"),
}


@pytest.mark.parametrize("encoding", list(ACCEPTED))
def test_accepted_mask_encodings(tmp_path, encoding):
    path = ACCEPTED[encoding](tmp_path / "m.png", half_mask())
    mask = read_mask(path)
    assert mask.dtype == np.bool_ and mask.shape == (12, 16)
    np.testing.assert_array_equal(mask, half_mask())


def test_black_and_white_palette_with_white_index_0_is_read_as_it_looks(tmp_path):
    """Pillow writes a black-and-white RGB image to GIF with white at index 0: white is still the foreground."""
    path = write_pil(tmp_path / "m.gif", Image.fromarray(grey(half_mask(), 255)).convert("RGB"), "GIF")
    with Image.open(path) as stored:
        assert stored.mode == "P" and stored.getpalette()[:6] == [255, 255, 255, 0, 0, 0]
    np.testing.assert_array_equal(read_mask(path), half_mask())
    all_white = write_pil(tmp_path / "white.gif", Image.new("RGB", (4, 3), "white"), "GIF")
    np.testing.assert_array_equal(read_mask(all_white), np.ones((3, 4), bool))


@pytest.mark.parametrize("fill, expected", [(0, False), (255, True)])
def test_uniform_masks(tmp_path, fill, expected):
    mask = read_mask(write_cv2(tmp_path / "u.png", np.full((5, 5), fill, np.uint8)))
    assert mask.shape == (5, 5) and bool(mask.all()) is expected and bool(mask.any()) is expected


def three_levels(m: np.ndarray) -> np.ndarray:
    out = grey(m, 255)
    out[0, :4] = 128
    return out


def coloured(m: np.ndarray) -> np.ndarray:
    out = np.repeat(grey(m, 255)[..., None], 3, axis=2)
    out[0, 0] = (0, 0, 255)  # BGR red
    return out


def jpeg_noise_source() -> np.ndarray:
    """Sharp blocks and a diagonal: lossy compression turns them into many grey levels."""
    return np.kron(grey(half_mask(6, 6), 255), np.ones((9, 9), np.uint8)) + np.eye(54, dtype=np.uint8) * 60


REJECTED = {
    "grey levels": (lambda p, m: write_cv2(p, three_levels(m)), r"0, 128, 255"),
    "two non-zero levels": (lambda p, m: write_cv2(p, grey(m, 1) + grey(~m, 255)), r"1, 255"),
    "0/128": (lambda p, m: write_cv2(p, grey(m, 128)), r"0, 128"),
    "several colours": (lambda p, m: write_cv2(p, coloured(m)), r"\(255, 0, 0\)"),
    "palette 3 indices": (lambda p, m: write_palette(p, grey(m, 1) + np.eye(12, 16, dtype=np.uint8) * 2), r"0, 1, 2"),
    "palette without 0": (lambda p, m: write_palette(p, grey(m, 1) + 1), r"1, 2"),
    "transparency": (lambda p, m: write_pil(p, Image.fromarray(
        np.dstack([grey(m, 255), grey(m, 255)]), "LA")), "transparency"),
    "JPEG mask": (lambda p, m: write_pil(p, Image.fromarray(jpeg_noise_source()), "JPEG", quality=50), "distinct"),
}


@pytest.mark.parametrize("encoding", list(REJECTED))
def test_rejected_mask_encodings_name_file_and_values(tmp_path, encoding):
    write, values = REJECTED[encoding]
    path = write(tmp_path / f"{ODD_NAME}.png", half_mask())
    with pytest.raises(MaskError, match=values) as info:
        read_mask(path)
    assert printable(path) in str(info.value)


def test_any_nonzero_takes_every_non_zero_value(tmp_path):
    levels = grey(half_mask(), 37)
    levels[0, -1] = 200
    expected = half_mask()
    expected[0, -1] = True
    np.testing.assert_array_equal(read_mask(write_cv2(tmp_path / "a.png", levels), any_nonzero=True), expected)
    colours = np.zeros((12, 16, 3), np.uint8)
    colours[half_mask()] = (0, 90, 0)
    np.testing.assert_array_equal(read_mask(write_cv2(tmp_path / "b.png", colours), any_nonzero=True), half_mask())


def test_mask_that_is_not_an_image(tmp_path):
    path = tmp_path / "m.png"
    path.write_text("not a png")
    with pytest.raises(ImageReadError, match="m.png") as caught:
        read_mask(path)
    assert str(caught.value).endswith("not a decodable image (unknown format, corrupt or truncated)")  # no buffer


# --- pairs --------------------------------------------------------------------------------------------------------


def test_pair_of_another_size_is_an_error_naming_both(tmp_path):
    image = write_rgb(tmp_path / "img.jpg", left_red_image(12, 16))
    mask = write_cv2(tmp_path / "msk.png", grey(half_mask(24, 32), 255))
    with pytest.raises(MaskError, match=r"msk.png: mask is 24x32.*img.jpg is 12x16"):
        read_pair(image, mask)


def test_pair_uses_exif_rotation_when_the_mask_was_drawn_on_the_rotated_image(tmp_path):
    rgb = left_red_image(12, 16)
    image = write_exif_jpeg(tmp_path / "img.jpg", rgb, 6)
    mask = write_cv2(tmp_path / "msk.png", grey(np.rot90(half_mask(12, 16), -1), 255))
    got, m = read_pair(image, mask)
    assert got.shape == (16, 12, 3) and m.shape == (16, 12)
    assert close(got, np.rot90(rgb, -1))


def test_pair_falls_back_to_stored_orientation_when_only_that_fits(tmp_path):
    rgb = left_red_image(12, 16)
    image = write_exif_jpeg(tmp_path / "img.jpg", rgb, 6)
    mask = write_cv2(tmp_path / "msk.png", grey(half_mask(12, 16), 255))
    got, m = read_pair(image, mask)
    assert close(got, rgb)
    np.testing.assert_array_equal(m, half_mask(12, 16))


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_prediction_on_the_rotated_image_is_turned_back_to_a_mask_of_the_stored_one(tmp_path, orientation):
    stored = np.zeros((24, 32, 3), np.uint8)
    stored[:8, :16] = 255  # a corner no turn or flip leaves in place
    image = write_exif_jpeg(tmp_path / "img.jpg", stored, orientation)
    prediction = read_image(image)[..., 0] > 128  # as the model sees the image: rotated
    assert prediction.shape == (32, 24)
    np.testing.assert_array_equal(fit_to_mask(prediction, image, tmp_path / "m.png", (24, 32)), stored[..., 0] > 0)
    assert fit_to_mask(prediction, image, tmp_path / "m.png", (32, 24)) is prediction  # drawn on the rotated image


def test_prediction_fitting_no_orientation_of_the_mask_names_both_files(tmp_path):
    image = write_rgb(tmp_path / "img.jpg", left_red_image(12, 16))
    with pytest.raises(MaskError, match=r"msk.png: mask is 16x12.*img.jpg is 12x16"):
        fit_to_mask(half_mask(12, 16), image, tmp_path / "msk.png", (16, 12))  # no EXIF turn to undo


# --- writing ------------------------------------------------------------------------------------------------------


def test_write_png_atomic_roundtrips(tmp_path):
    write_png_atomic(tmp_path / "out" / f"{ODD_NAME}.png", half_mask())
    np.testing.assert_array_equal(read_mask(tmp_path / "out" / f"{ODD_NAME}.png"), half_mask())
    assert cv2.imdecode(np.fromfile(tmp_path / "out" / f"{ODD_NAME}.png", np.uint8), cv2.IMREAD_UNCHANGED).max() == 255
    write_png_atomic(tmp_path / "out" / "rgb.png", left_red_image())
    np.testing.assert_array_equal(read_image(tmp_path / "out" / "rgb.png"), left_red_image())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([f"{ODD_NAME}.png", "rgb.png"])


def test_write_png_atomic_rejects_bad_arrays_and_keeps_old_file(tmp_path):
    target = tmp_path / "m.png"
    write_png_atomic(target, half_mask())
    with pytest.raises(ValueError, match="float"):
        write_png_atomic(target, np.zeros((4, 4), np.float32))
    np.testing.assert_array_equal(read_mask(target), half_mask())
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]
