"""Floating-point TIFFs (OpenCV's ``imwrite`` of a float array, scientific software): images read and scaled to
8-bit like 16-bit ones, values within [0, 1] by 255, others clipped to [0, 255], NaN refused naming the file; float
masks Pillow cannot decode refused saying why, not as undecodable."""
from __future__ import annotations

import numpy as np
import pytest

from coseg.data.io import ImageReadError, MaskError, read_image, read_image_for_size, read_mask
from tests.coseg.files import half_mask, write_cv2


def float_bgr(low: float, high: float, channels: int = 3, dtype=np.float32) -> np.ndarray:
    """(12, 16[, C]) float BGR(A) for OpenCV: ``high`` on the left half, ``low`` on the right (B, G at 0.2, 0.5 of
    it), alpha 255 (not counted when choosing the scale)."""
    grey = np.where(half_mask(), high, low).astype(dtype)
    planes = [grey * 0.2, grey * 0.5, grey, np.full_like(grey, 255)][:channels]
    return grey if channels == 1 else np.dstack(planes)


@pytest.mark.parametrize("low, high, left, right", [
    (0.0, 1.0, (255, 128, 51), (0, 0, 0)),  # within [0, 1]: scaled by 255 (RGB of BGR 0.2, 0.5, 1.0)
    (0.0, 255.0, (255, 128, 51), (0, 0, 0)),  # [0, 255]: as it is
    (-3.0, 300.0, (255, 150, 60), (0, 0, 0)),  # beyond: clipped
])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_float_tiff_images_are_scaled_to_8_bit(tmp_path, low, high, left, right, channels):
    path = write_cv2(tmp_path / "a.tif", float_bgr(low, high, channels), ".tif")
    image = read_image(path)
    if channels == 1:
        left, right = (left[0],) * 3, (right[0],) * 3
    assert image.dtype == np.uint8 and image.shape == (12, 16, 3)
    assert tuple(image[0, 0]) == left and tuple(image[0, -1]) == right
    np.testing.assert_array_equal(read_image_for_size(path, 4)[0], image)


def test_float64_tiff_image_is_read(tmp_path):
    image = read_image(write_cv2(tmp_path / "a.tiff", float_bgr(0.0, 1.0, dtype=np.float64), ".tif"))
    assert tuple(image[0, 0]) == (255, 128, 51)


def test_float_tiff_image_with_nan_names_the_file(tmp_path):
    values = float_bgr(0.0, 1.0)
    values[3, 4] = np.nan
    path = write_cv2(tmp_path / "scan.tif", values, ".tif")
    with pytest.raises(ImageReadError, match=r"scan.tif: floating-point image holds 3 NaN or infinite value\(s\)"):
        read_image(path)


@pytest.mark.parametrize("white", [1.0, 255.0])
def test_float32_grayscale_tiff_masks_are_read(tmp_path, white):
    np.testing.assert_array_equal(read_mask(write_cv2(tmp_path / "m.tif", float_bgr(0.0, white, 1), ".tif")),
                                  half_mask())
    with pytest.raises(MaskError, match=r"m.tif: grayscale mask must hold two levels, .* found values 0.0, 0.5"):
        read_mask(write_cv2(tmp_path / "m.tif", float_bgr(0.0, 0.5, 1), ".tif"))


@pytest.mark.parametrize("channels, dtype, kind", [(3, np.float32, "float32 colour"),
                                                   (1, np.float64, "float64 grayscale")])
def test_float_tiff_masks_pillow_cannot_decode_are_refused_saying_why(tmp_path, channels, dtype, kind):
    path = write_cv2(tmp_path / "m.tif", float_bgr(0.0, 1.0, channels, dtype), ".tif")
    with pytest.raises(MaskError, match=rf"m.tif: {kind} mask is not read \(only 32-bit float grayscale is\): save "
                                        "it as 1-bit or 8-bit grayscale"):
        read_mask(path)
