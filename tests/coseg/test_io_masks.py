"""Masks taken as stored: 16 bits per colour channel read at full depth (not cut to their high byte by Pillow), a
TIFF with an orientation tag not turned (as Pillow 13 turns it on loading)."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image

from coseg.data.io import MaskError, read_mask
from tests.coseg.files import half_mask, write_cv2, write_pil


def deep_colour(white: int, alpha: bool = False) -> np.ndarray:
    """``half_mask`` as (H, W, 3 or 4) uint16 BGR(A) for OpenCV: black and grey ``white``, opaque."""
    grey = half_mask().astype(np.uint16) * np.uint16(white)
    channels = [grey] * 3 + ([np.full(grey.shape, 65535, np.uint16)] if alpha else [])
    return np.dstack(channels)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("white", [1, 255, 65535])
@pytest.mark.parametrize("alpha", [False, True])
def test_16_bit_colour_masks_are_read_at_full_depth(tmp_path, suffix, white, alpha):
    path = write_cv2(tmp_path / f"m{suffix}", deep_colour(white, alpha), suffix)
    np.testing.assert_array_equal(read_mask(path), half_mask())


def test_16_bit_colour_masks_of_other_levels_name_them(tmp_path):
    path = write_cv2(tmp_path / "m.png", deep_colour(256))
    with pytest.raises(MaskError, match=r"m.png: RGB mask must hold only black and white, found colours "
                                        r"\(0, 0, 0\), \(256, 256, 256\)"):
        read_mask(path)
    red = deep_colour(65535)
    red[..., :2] = 0  # BGR: only red left
    with pytest.raises(MaskError, match=r"\(65535, 0, 0\)"):
        read_mask(write_cv2(tmp_path / "red.png", red))
    np.testing.assert_array_equal(read_mask(tmp_path / "red.png", any_nonzero=True), half_mask())


def tiff_16_bit_rgb(height: int, width: int, orientation: int) -> bytes:
    """An uncompressed little-endian TIFF of black (H, W) 16-bit RGB with an orientation tag (no writer at hand
    makes one)."""
    pixels = bytes(height * width * 6)
    entries = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, 0), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, 0), (274, 3, 1, orientation), (277, 3, 1, 3), (278, 3, 1, height),
               (279, 4, 1, len(pixels))]
    ifd_size = 2 + 12 * len(entries) + 4
    bits_at, pixels_at = 8 + ifd_size, 8 + ifd_size + 6
    ifd = len(entries).to_bytes(2, "little")
    for tag, kind, count, value in entries:
        value = {258: bits_at, 273: pixels_at}.get(tag, value)
        ifd += struct.pack("<HHII" if kind == 4 else "<HHIHxx", tag, kind, count, value)
    return b"II*\x00" + (8).to_bytes(4, "little") + ifd + bytes(4) + struct.pack("<HHH", 16, 16, 16) + pixels


def test_16_bit_colour_mask_with_an_orientation_tag_is_refused(tmp_path):
    """OpenCV turns a TIFF by its orientation tag whatever it is told, and a mask is taken as stored."""
    path = tmp_path / "m.tif"
    path.write_bytes(tiff_16_bit_rgb(12, 16, 6))
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.getexif()[0x0112] == 6
    with pytest.raises(MaskError, match="m.tif: 16-bit colour mask with an EXIF orientation tag"):
        read_mask(path)
    path.write_bytes(tiff_16_bit_rgb(12, 16, 1))
    np.testing.assert_array_equal(read_mask(path), np.zeros((12, 16), bool))


@pytest.mark.parametrize("orientation", [3, 6])
def test_tiff_mask_with_an_orientation_tag_is_taken_as_stored(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = write_pil(tmp_path / "m.tif", Image.fromarray(half_mask()), "TIFF", exif=exif.tobytes())
    np.testing.assert_array_equal(read_mask(path), half_mask())
