"""coseg.data.augment under mixed precision, in other layouts and dtypes, and its arguments refused by name."""
from __future__ import annotations

import pytest
import torch

from coseg.data import TrainAugmentation
from tests.coseg.test_augment_alignment import coordinate_images, nearest_source_labels

SETTINGS = dict(crop_scale=(0.3, 1.0), flip_p=0.5, affine_p=0.7, degrees=30.0, jitter_p=0.0)


def augment(aug: TrainAugmentation, images: torch.Tensor, masks: torch.Tensor, seed: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    return aug(images, masks)


def test_autocast_keeps_the_mask_on_its_image():
    """Training runs the augmentation inside autocast (--amp): the image's warps and the mask's composed matrix
    were computed in half precision then, and the mask drifted off its pixels (about 8% of them with bfloat16)."""
    size, batch = 48, 12
    images = coordinate_images(batch, size).float()
    masks = (torch.rand(batch, 1, size, size) > 0.5).float()
    aug = TrainAugmentation(size, **SETTINGS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_images, out_masks = augment(aug, images, masks)
    expected, defined = nearest_source_labels(images, masks, out_images)
    assert defined.float().mean() > 0.5
    assert torch.equal(out_masks[:, 0][defined], expected[defined])
    assert torch.equal(out_masks, augment(aug, images, masks)[1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_images_move_as_their_float32_copy(dtype):
    """The geometry is the same whatever the images' dtype: the mask equals that of the float32 copy, the image
    that copy's output rounded to ``dtype``."""
    size, batch = 48, 8
    images = coordinate_images(batch, size).to(dtype)
    masks = (torch.rand(batch, 1, size, size) > 0.5).float()
    aug = TrainAugmentation(size, **SETTINGS)
    out_images, out_masks = augment(aug, images, masks)
    ref_images, ref_masks = augment(aug, images.float(), masks)
    assert out_images.dtype == dtype and out_masks.dtype == torch.float32
    assert torch.equal(out_masks, ref_masks)
    assert torch.equal(out_images, ref_images.to(dtype))


def test_channels_last_and_a_batch_of_one():
    size = 32
    images = coordinate_images(3, size).float()
    masks = (torch.rand(3, 1, size, size) > 0.5).float()
    aug = TrainAugmentation(size, **SETTINGS)
    ref = augment(aug, images, masks)
    out = augment(aug, images.contiguous(memory_format=torch.channels_last), masks)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    one_images, one_masks = augment(aug, images[:1], masks[:1], seed=5)
    expected, defined = nearest_source_labels(images[:1], masks[:1], one_images)
    assert one_masks.shape == (1, 1, size, size)
    assert torch.equal(one_masks[:, 0][defined], expected[defined])


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=0), "image_size must be an integer >= 1"),
    (dict(crop_scale=(0.0, 1.0)), "crop_scale must be"),
    (dict(crop_scale=(0.5, 1.5)), "crop_scale must be"),
    (dict(crop_scale=(0.8, 0.5)), "crop_scale must be"),
    (dict(crop_scale=(float("nan"), 1.0)), "crop_scale must be"),
    (dict(crop_ratio=(2.0, 1.0)), "crop_ratio must be"),
    (dict(crop_ratio=(0.0, 1.0)), "crop_ratio must be"),
    (dict(crop_scale=(0.001, 1.0)), "under 2 pixels a side"),
    (dict(flip_p=1.5), "flip_p must be a probability"),
    (dict(affine_p=-0.1), "affine_p must be a probability"),
    (dict(jitter_p=float("nan")), "jitter_p must be a probability"),
])
def test_bad_arguments_are_refused_by_name(kwargs, message):
    """kornia let probabilities outside [0, 1] and crop scales outside (0, 1] through, and named the others by its
    own names (``scale``, ``ratio``) or with an AssertionError."""
    kwargs = {"image_size": 16, **kwargs}
    with pytest.raises(ValueError, match=message):
        TrainAugmentation(**kwargs)


@pytest.mark.parametrize("crop_scale", [(0.0024, 0.0024), (1.0, 1.0)])
def test_crop_scale_edge_values_keep_the_mask_on_its_image(crop_scale):
    """The smallest crops allowed, 2 pixels a side at the extreme ratio, and whole-image crops. Crops of 1 pixel
    (crop_scale 0.001 at 48 px) showed the image's row where the mask had background."""
    size, batch = 48, 16
    images = coordinate_images(batch, size)
    masks = (torch.rand(batch, 1, size, size) > 0.5).to(torch.float64)
    aug = TrainAugmentation(size, crop_scale=crop_scale, crop_ratio=(3 / 4, 4 / 3), flip_p=0.5, affine_p=0.0,
                            jitter_p=0.0)
    out_images, out_masks = augment(aug, images, masks)
    expected, defined = nearest_source_labels(images, masks, out_images)
    assert defined.float().mean() > 0.5
    assert torch.equal(out_masks[:, 0][defined], expected[defined])
    assert set(out_masks.unique().tolist()) <= {0.0, 1.0}
