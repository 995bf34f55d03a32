"""Internet masks ("any non-zero = foreground") saved as palette images: a black-and-white palette whose index 0 is
white (as some GIF and PNG writers order it) shows a white object on black, and is read so, as every other layout
reads it, not inverted; decoded entries of the earlier reading in a cache folder are not reused."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import coseg.data.cache as cache_module
from coseg.data import ImageCache, find_samples, make_synthetic_coseg
from coseg.data.cache import resize_mask
from coseg.data.io import read_mask, read_pair

WHITE_FIRST, BLACK_FIRST = [255, 255, 255, 0, 0, 0], [0, 0, 0, 255, 255, 255]


def save_palette(path, white: np.ndarray, palette: list[int]) -> None:
    """``white`` (H, W) bool as a palette image of two entries, ``palette``, in that order."""
    white_index = 0 if palette == WHITE_FIRST else 1
    image = Image.fromarray(np.where(white, white_index, 1 - white_index).astype(np.uint8), "P")
    image.putpalette(palette)
    image.save(path)


def shown_white(path) -> np.ndarray:
    """The naive reference: the pixels a viewer sees as non-black."""
    return np.asarray(Image.open(path).convert("RGB")).any(axis=-1)


@pytest.mark.parametrize("palette", [WHITE_FIRST, BLACK_FIRST])
@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_a_black_and_white_palette_mask_reads_alike_with_any_nonzero(tmp_path, palette, suffix):
    white = np.zeros((6, 8), bool)
    white[2:5, 3:7] = True
    path = tmp_path / f"mask{suffix}"
    save_palette(path, white, palette)
    assert (read_mask(path, any_nonzero=True) == shown_white(path)).all()
    assert (read_mask(path, any_nonzero=True) == read_mask(path)).all()


@pytest.fixture
def internet_sample(tmp_path):
    """An Internet sample whose ground truth is saved with a white-first palette, and that ground truth."""
    root = make_synthetic_coseg(tmp_path / "Internet", num_groups=1, images_per_group=2, size=32, layout="internet")
    sample = find_samples(root).labelled[0]
    truth = read_pair(sample.image, sample.mask, any_nonzero=True)[1]
    save_palette(sample.mask, truth, WHITE_FIRST)
    assert sample.any_nonzero and truth.any() and not truth.all()
    return sample, truth


def test_internet_ground_truth_with_a_white_first_palette_is_not_inverted(internet_sample):
    sample, truth = internet_sample
    assert (read_pair(sample.image, sample.mask, any_nonzero=sample.any_nonzero)[1] == truth).all()


def test_cached_entries_of_the_inverted_reading_are_decoded_again(internet_sample, tmp_path, monkeypatch):
    sample, truth = internet_sample
    image = read_pair(sample.image, sample.mask, any_nonzero=True)[0]
    with monkeypatch.context() as before:
        before.setattr(cache_module, "_FORMAT", 4)
        before.setattr(cache_module, "read_pair", lambda *args, **kwargs: (image, ~truth))
        ImageCache(16, cache_dir=tmp_path / "cache", progress=False).load([sample])
    cache = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    cache.load([sample])
    assert cache.decoded == 1
    np.testing.assert_array_equal(cache[sample].mask, resize_mask(truth, 16))
