"""Gray + alpha TIFFs: Pillow reads a TIFF's associated (premultiplied) alpha as mode "La", which was refused as a
mask's mode; OpenCV refuses a tiled gray + alpha TIFF image and garbles the edge tiles of a compressed one; a damaged
one could make Pillow raise an error no caller skipped."""
import io
import struct

import numpy as np
import pytest
from PIL import Image

from coseg.data.cache import ImageCache
from coseg.data.io import DataFileError, MaskError, read_image, read_mask
from coseg.data.layouts import Sample

tifffile = pytest.importorskip("tifffile")


def gray_alpha(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (12, 20) 0/255 mask and it as (12, 20, 2) gray + ``alpha``."""
    mask = np.zeros((12, 20), np.uint8)
    mask[3:8, 5:15] = 255
    return mask, np.dstack([mask, alpha])


@pytest.mark.parametrize("extrasample", [1, 2], ids=["associated", "unassociated"])
def test_opaque_gray_alpha_tiff_mask_reads_as_gray(tmp_path, extrasample):
    mask, data = gray_alpha(np.full((12, 20), 255, np.uint8))
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, data, photometric="minisblack", extrasamples=[extrasample])
    np.testing.assert_array_equal(read_mask(path), mask > 0)
    np.testing.assert_array_equal(read_image(path), np.repeat(mask[..., None], 3, axis=2))


def test_gray_alpha_tiff_mask_with_transparency_is_refused_by_name(tmp_path):
    _, data = gray_alpha(np.tile(np.arange(20, dtype=np.uint8) * 10, (12, 1)))
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, data, photometric="minisblack", extrasamples=[1])
    with pytest.raises(MaskError, match=r"m.tif: mask has transparency"):
        read_mask(path)


def gray_image() -> np.ndarray:
    """(12, 20) uint8 with no two neighbours alike, so a misplaced tile or turn shows."""
    return (np.arange(12 * 20).reshape(12, 20) % 7 * 30).astype(np.uint8)


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("extrasample", [0, 1, 2], ids=["unspecified", "associated", "unassociated"])
def test_tiled_gray_alpha_tiff_image_decodes_as_gray(tmp_path, compression, extrasample):
    """OpenCV refuses an uncompressed tiled one and garbles the right-hand tiles of a compressed one."""
    gray = gray_image()
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, np.dstack([gray, np.full_like(gray, 255)]), photometric="minisblack",
                     extrasamples=[extrasample], compression=compression, tile=(16, 16))
    np.testing.assert_array_equal(read_image(path), np.repeat(gray[..., None], 3, axis=2))


def test_gray_alpha_tiff_image_is_turned_by_its_orientation_as_a_gray_one(tmp_path):
    gray = gray_image()
    for mode, array in (("L", gray), ("LA", np.dstack([gray, np.full_like(gray, 255)]))):
        image = Image.fromarray(array, mode)
        exif = image.getexif()
        exif[0x0112] = 6
        image.save(tmp_path / f"{mode}.tif", exif=exif)
    turned = read_image(tmp_path / "L.tif")
    assert turned.shape == (20, 12, 3)
    np.testing.assert_array_equal(read_image(tmp_path / "LA.tif"), turned)
    np.testing.assert_array_equal(read_image(tmp_path / "LA.tif", apply_exif=False)[..., 0], gray)


def tiff_of_huge_tiles(path) -> None:
    """A gray + alpha TIFF whose tile width tag says 2^30 pixels: Pillow's decoder raised OverflowError (a row's
    stride beyond 2^31 bytes), which no caller skips."""
    _, data = gray_alpha(np.full((12, 20), 255, np.uint8))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, data, photometric="minisblack", extrasamples=[2], tile=(16, 16))
    tiff = bytearray(buffer.getvalue())
    ifd = struct.unpack_from("<I", tiff, 4)[0]
    for entry in range(struct.unpack_from("<H", tiff, ifd)[0]):
        at = ifd + 2 + 12 * entry
        if struct.unpack_from("<H", tiff, at)[0] == 322:  # TileWidth
            struct.pack_into("<HHII", tiff, at, 322, 4, 1, 1 << 30)  # as one LONG
    path.write_bytes(bytes(tiff))


@pytest.mark.parametrize("read", [read_mask, read_image])
def test_damaged_tiff_pillow_overflows_on_is_a_data_file_error_naming_it(tmp_path, read):
    tiff_of_huge_tiles(tmp_path / "huge.tif")
    with pytest.raises(DataFileError, match=r"huge.tif: "):
        read(tmp_path / "huge.tif")


def test_decoding_for_training_skips_and_names_such_a_mask(tmp_path):
    tiff_of_huge_tiles(tmp_path / "huge.tif")
    Image.fromarray(gray_image()).save(tmp_path / "img.png")
    cache = ImageCache(8, progress=False)
    assert cache.load([Sample(tmp_path / "img.png", tmp_path / "huge.tif", "g")]) == []
    [(path, problem)] = cache.skipped
    assert path.name == "huge.tif" and "not a decodable image" in problem
