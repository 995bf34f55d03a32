"""Audit of the synthetic data set at a few pixels: every image that has the object has a non-empty mask."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from coseg.data import make_synthetic_coseg, synthetic_image


@pytest.mark.parametrize("size, group, image, seed", [
    (1, 0, 0, 0), (2, 2, 63, 0), (3, 4, 2, 0), (4, 4, 1, 0), (5, 4, 46, 0), (6, 4, 2, 0),
])
def test_the_object_covers_a_pixel_where_a_ring_hole_or_rounding_erased_it(size, group, image, seed):
    picture, mask = synthetic_image(size, group, image, seed)
    assert mask.any()
    assert picture.shape == (size, size, 3) and mask.shape == (size, size)


def test_no_empty_mask_at_small_sizes():
    empty = [(size, group, image) for size in range(1, 9) for group in range(10) for image in range(30)
             if not synthetic_image(size, group, image)[1].any()]
    assert empty == []


def test_images_without_the_object_keep_an_empty_mask():
    assert not synthetic_image(4, 4, 1, with_object=False)[1].any()


def test_a_written_ring_group_at_four_pixels_has_foreground_in_every_mask(tmp_path):
    root = make_synthetic_coseg(tmp_path, num_groups=5, images_per_group=3, size=4)
    masks = sorted((root / "ground_truth" / "04-ring").glob("*.png"))
    assert len(masks) == 3
    assert all(np.any(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)) for path in masks)
