"""EXIF orientation: one rule for every image format, in training (read_pair, the cache) and evaluation (fit_to_mask).

OpenCV's TIFF decoder rotates by the orientation tag even when told not to, so the stored TIFF used to be
unreachable: a mask drawn on it was skipped by training and accepted by evaluation."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from coseg.data import CosegDataset, ImageCache, find_samples, resize_image, resize_mask
from coseg.data.io import fit_to_mask, read_image, read_mask, read_pair
from tests.coseg.files import write_cv2, write_pil

# lossless encodings, so the pixels can be compared exactly
FORMATS = {".tif": ("TIFF", {}), ".png": ("PNG", {}), ".webp": ("WEBP", {"lossless": True})}


def stored_image() -> np.ndarray:
    """(12, 16, 3) uint8 with a corner no turn or flip leaves in place, and distinct values everywhere."""
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[..., 1] = np.arange(12 * 16).reshape(12, 16)
    rgb[:4, :6, 0] = 255
    return rgb


def write_oriented(path, rgb: np.ndarray, orientation: int):
    fmt, options = FORMATS[path.suffix]
    exif = Image.Exif()
    exif[0x0112] = orientation
    return write_pil(path, Image.fromarray(rgb), fmt, exif=exif.tobytes(), **options)


@pytest.mark.parametrize("suffix", list(FORMATS))
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_format_is_read_as_viewed_and_as_stored(tmp_path, suffix, orientation):
    path = write_oriented(tmp_path / f"img{suffix}", stored_image(), orientation)
    with Image.open(path) as im:
        viewed = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(read_image(path), viewed)
    np.testing.assert_array_equal(read_image(path, apply_exif=False), stored_image())


@pytest.mark.parametrize("suffix", list(FORMATS))
@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_training_and_evaluation_pair_a_mask_of_the_stored_image_alike(tmp_path, suffix, orientation):
    image = write_oriented(tmp_path / f"img{suffix}", stored_image(), orientation)
    mask_path = write_cv2(tmp_path / "msk.png", (stored_image()[..., 0] > 0).astype(np.uint8) * 255)
    got, mask = read_pair(image, mask_path)  # training
    np.testing.assert_array_equal(got, stored_image())
    prediction = read_image(image)[..., 0] > 0  # evaluation: a prediction on the image as viewed, turned back
    np.testing.assert_array_equal(fit_to_mask(prediction, image, mask_path, mask.shape), mask)


def test_training_keeps_an_exif_turned_tiff_whose_mask_was_drawn_on_the_stored_image(tmp_path):
    root = tmp_path / "data"
    write_oriented(root / "images" / "g" / "a.tif", stored_image(), 6)
    write_cv2(root / "ground_truth" / "g" / "a.png", (stored_image()[..., 0] > 0).astype(np.uint8) * 255)
    samples = find_samples(root, "icoseg").samples
    cache = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    dataset = CosegDataset(samples, 16, cache)
    assert cache.skipped == [] and len(dataset) == 1
    item = dataset[0]
    assert item["size"].tolist() == [12, 16]
    np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), resize_image(stored_image(), 16))
    np.testing.assert_array_equal(item["mask"].numpy(), resize_mask(read_mask(samples[0].mask), 16))
