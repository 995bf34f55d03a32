"""Resizing images that shrink on one side and grow on the other (panoramas, tall images): each side as a naive
per-axis reference does it, the shrinking one by area (the mean of what an output pixel covers)."""
from __future__ import annotations

import numpy as np
import pytest

from coseg.data import resize_image
from coseg.data.io import resize_to


def area_weights(source: int, target: int) -> np.ndarray:
    """(target, source): output pixel j averages the source pixels its span [j·r, (j+1)·r) covers, by overlap."""
    r = source / target
    weights = np.zeros((target, source))
    for j in range(target):
        for i in range(source):
            weights[j, i] = max(0.0, min((j + 1) * r, i + 1) - max(j * r, i)) / r
    return weights


def linear_weights(source: int, target: int) -> np.ndarray:
    """(target, source): bilinear with half-pixel centres, the border pixels repeated."""
    weights = np.zeros((target, source))
    for j in range(target):
        x = min(max((j + 0.5) * source / target - 0.5, 0.0), source - 1)
        low = int(np.floor(x))
        high = min(low + 1, source - 1)
        weights[j, low] += 1 - (x - low)
        weights[j, high] += x - low
    return weights


def naive_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = (area_weights if height < image.shape[0] else linear_weights)(image.shape[0], height)
    columns = (area_weights if width < image.shape[1] else linear_weights)(image.shape[1], width)
    return np.einsum("yh,hwc,xw->yxc", rows, image.astype(float), columns)


@pytest.mark.parametrize("shape, size", [((5, 48), (12, 12)), ((48, 5), (12, 12)), ((7, 30), (9, 11))])
def test_a_side_shrinking_while_the_other_grows_is_averaged_not_sampled(shape, size):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    resized = resize_to(image, size)
    assert resized.shape == (*size, 3) and resized.dtype == np.uint8
    np.testing.assert_allclose(resized, naive_resize(image, *size), atol=1.5)  # two uint8 roundings


def test_a_panoramas_fine_stripes_become_their_mean_grey():
    stripes = np.where(np.arange(3000) % 4 < 2, 255, 0).astype(np.uint8)
    panorama = np.broadcast_to(stripes[None, :, None], (200, 3000, 3)).copy()
    resized = resize_image(panorama, 224)
    assert np.abs(resized.astype(float) - 127.5).max() < 16  # one bilinear step kept them at 0 and 255
