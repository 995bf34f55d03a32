"""coseg.data.io on deep samples: 16-bit images scaled from their full range (12-bit data stored unscaled reads dark,
as documented), 16-bit gray + alpha TIFF images decoded, and the gray + alpha TIFFs no decoder reads refused by name
instead of "not a decodable image"."""
from __future__ import annotations

import numpy as np
import pytest

from coseg.data import DataFileError, ImageCache, ImageReadError, MaskError, Sample, read_image, read_mask
from tests.coseg.files import half_mask, write_cv2

tifffile = pytest.importorskip("tifffile")


def _ramp(top: int) -> np.ndarray:
    """(6, 8) uint16 rising from 0 to ``top``."""
    return np.linspace(0, top, 48).reshape(6, 8).round().astype(np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_images_are_scaled_from_their_full_range_and_8_bit_ones_are_not(tmp_path, suffix):
    full = read_image(write_cv2(tmp_path / f"full{suffix}", _ramp(65535), suffix))
    assert full.max() == 255 and np.abs(full[..., 0].astype(int) - _ramp(65535) / 257).max() <= 1
    twelve_bit = read_image(write_cv2(tmp_path / f"twelve{suffix}", _ramp(4095), suffix))
    assert twelve_bit.max() <= 16  # dark: documented, as OpenCV, scikit-image and torchvision read it
    eight_bit = _ramp(255).astype(np.uint8)
    np.testing.assert_array_equal(read_image(write_cv2(tmp_path / f"eight{suffix}", eight_bit, suffix))[..., 1],
                                  eight_bit)


@pytest.mark.parametrize("tile", [None, (16, 16)])
def test_a_16_bit_gray_alpha_tiff_image_reads_as_its_gray(tmp_path, tile):
    gray = np.tile(_ramp(65535), (4, 4))
    path = tmp_path / "ga.tif"
    tifffile.imwrite(path, np.dstack([gray, np.full_like(gray, 65535)]), photometric="minisblack",
                     extrasamples=[2], tile=tile)
    image = read_image(path)
    assert image.shape == (24, 32, 3) and (image == image[..., :1]).all()
    assert np.abs(image[..., 0].astype(int) - gray / 257).max() <= 1


def _float_gray_alpha(path) -> None:
    gray = _ramp(65535).astype(np.float32) / 65535
    tifffile.imwrite(path, np.dstack([gray, np.ones_like(gray)]), photometric="minisblack", extrasamples=[2])


def test_a_float_gray_alpha_tiff_image_is_refused_by_name_without_opencv_noise(tmp_path, capfd):
    _float_gray_alpha(tmp_path / "fga.tif")
    capfd.readouterr()
    with pytest.raises(ImageReadError, match=r"fga\.tif: 32-bit float gray \+ alpha TIFF is not read: save it "
                                             r"without alpha, or as 8- or 16-bit"):
        read_image(tmp_path / "fga.tif")
    assert capfd.readouterr().err == ""  # OpenCV's TIFF decoder is not tried: it printed its complaint


@pytest.mark.parametrize("kind", ["16-bit", "32-bit float"])
def test_deep_gray_alpha_tiff_masks_are_refused_by_name(tmp_path, kind):
    path = tmp_path / "mask.tif"
    fg = half_mask(6, 8)
    if kind == "16-bit":
        data = np.dstack([fg * np.uint16(65535), np.full(fg.shape, 65535, np.uint16)])
    else:
        data = np.dstack([fg.astype(np.float32), np.ones(fg.shape, np.float32)])
    tifffile.imwrite(path, data, photometric="minisblack", extrasamples=[2])
    with pytest.raises(MaskError, match=rf"mask\.tif: {kind} gray \+ alpha TIFF mask is not read: save it as 1-bit "
                                        "or 8-bit grayscale without alpha"):
        read_mask(path)
    image = write_cv2(tmp_path / "image.png", np.zeros((6, 8, 3), np.uint8))
    cache = ImageCache(4, progress=False)
    assert cache.load([Sample(image, path, "g")]) == []
    assert cache.skipped == [(path, f"{kind} gray + alpha TIFF mask is not read: save it as 1-bit or 8-bit "
                                    "grayscale without alpha")]


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's warnings of damaged tags
def test_cut_tiffs_stay_a_data_file_error_naming_them(tmp_path):
    _float_gray_alpha(tmp_path / "whole.tif")
    data = (tmp_path / "whole.tif").read_bytes()
    for cut in (8, 12, 30, 60, 200, len(data) - 10):
        (tmp_path / "cut.tif").write_bytes(data[:cut])
        for read in (read_image, read_mask):
            with pytest.raises(DataFileError, match="cut.tif"):
                read(tmp_path / "cut.tif")
