"""coseg.data.augment: shapes, binary masks, image and mask moved together, repeatable under a seed."""
from __future__ import annotations

import pytest
import torch

from coseg.data import TrainAugmentation


def blobs(batch: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose every channel equals the mask (a random rectangle per sample), so geometry can be compared."""
    masks = torch.zeros(batch, 1, size, size, device=device)
    g = torch.Generator().manual_seed(1)
    for b in range(batch):
        y, x = torch.randint(0, size // 2, (2,), generator=g).tolist()
        masks[b, :, y:y + size // 3, x:x + size // 2] = 1
    return masks.repeat(1, 3, 1, 1), masks


def test_shapes_ranges_and_binary_masks(device):
    aug = TrainAugmentation(32)
    images, masks = blobs(4, 32, device)
    images = images * 0.6 + 0.2 * torch.rand_like(images)
    out_images, out_masks = aug(images, masks)
    assert out_images.shape == (4, 3, 32, 32) and out_masks.shape == (4, 1, 32, 32)
    assert out_images.device == images.device and out_masks.dtype == masks.dtype
    assert out_images.min() >= 0 and out_images.max() <= 1
    assert set(out_masks.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(out_images, images)


def test_image_and_mask_share_the_geometry(device):
    aug = TrainAugmentation(48, jitter_p=0.0, affine_p=1.0, flip_p=0.5, crop_scale=(0.4, 1.0))
    images, masks = blobs(8, 48, device)
    moved_images, moved_masks = aug(images, masks)
    assert not torch.equal(moved_masks, masks)
    agreement = ((moved_images[:, :1] > 0.5).float() == moved_masks).float().mean()
    assert agreement > 0.97  # only the blurred edges of the bilinear image may differ


def test_all_steps_off_is_the_identity():
    aug = TrainAugmentation(16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, affine_p=0.0, jitter_p=0.0)
    images, masks = blobs(2, 16, torch.device("cpu"))
    out_images, out_masks = aug(images, masks)
    torch.testing.assert_close(out_images, images, atol=1e-4, rtol=0)
    assert torch.equal(out_masks, masks)


def test_repeatable_under_a_seed():
    aug = TrainAugmentation(24)
    images, masks = blobs(3, 24, torch.device("cpu"))
    torch.manual_seed(7)
    first = aug(images, masks)
    torch.manual_seed(7)
    second = aug(images, masks)
    third = aug(images, masks)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], third[0])


def test_uint8_masks_come_back_as_uint8():
    images, masks = blobs(2, 16, torch.device("cpu"))
    _, out = TrainAugmentation(16)(images, masks.to(torch.uint8))
    assert out.dtype == torch.uint8 and set(out.unique().tolist()) <= {0, 1}


@pytest.mark.parametrize("images, masks, error, message", [
    (torch.rand(2, 3, 16, 16), torch.rand(2, 1, 8, 8), ValueError, "masks must have shape"),
    (torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16), ValueError, "images must have shape"),
    (torch.rand(2, 3, 16, 16), torch.rand(3, 1, 16, 16), ValueError, "masks must have shape"),
    (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), torch.rand(2, 1, 16, 16), TypeError, "floating point"),
])
def test_bad_inputs(images, masks, error, message):
    with pytest.raises(error, match=message):
        TrainAugmentation(16)(images, masks)


def test_config_sets_the_crop_scale_and_the_colour_jitter():
    from coseg.config import CosegTrainConfig
    from coseg.train import build_augmentation

    aug = build_augmentation(CosegTrainConfig(image_size=32, crop_scale=0.25, colour_jitter=0.6))
    crop, jitter = aug.pipeline[0], aug.pipeline[3]
    assert crop._param_generator.scale == (0.25, 1.0)
    assert (jitter.brightness, jitter.contrast, jitter.saturation) == (0.6, 0.6, 0.6)
    assert jitter.hue == pytest.approx(0.1)
    assert build_augmentation(CosegTrainConfig(augment=False)) is None


@pytest.mark.parametrize("strength, changed", [(0.0, False), (0.5, True)])
def test_colour_jitter_strength_zero_keeps_the_colours(strength, changed):
    """A uniform image keeps its colour wherever the crop's geometry puts its pixels unless colours are jittered."""
    from coseg.config import CosegTrainConfig
    from coseg.train import build_augmentation

    torch.manual_seed(0)
    colour = torch.tensor([0.6, 0.3, 0.2]).view(1, 3, 1, 1)
    images = colour.expand(8, 3, 32, 32).clone()
    out, _ = build_augmentation(CosegTrainConfig(image_size=32, colour_jitter=strength))(
        images, torch.ones(8, 1, 32, 32))
    centre = out[:, :, 12:20, 12:20]  # inside the image whatever the affine step's rotation and shift
    assert (centre - colour).abs().amax().item() > 0.02 if changed else torch.allclose(centre, colour.expand_as(centre),
                                                                                       atol=1e-5)
