"""coseg.data.augment, pixel for pixel: images whose channels hold each pixel's own (x, y), so that after a
transform the image says which source point every output pixel shows; the mask must be the source mask at the
nearest source pixel there."""
from __future__ import annotations

import pytest
import torch

from coseg.data import TrainAugmentation

OFF = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, affine_p=0.0, jitter_p=0.0)


def coordinate_images(batch: int, size: int) -> torch.Tensor:
    """(B, 3, S, S) float64: channel 0 = x / (S − 1), channel 1 = y / (S − 1), channel 2 = 1 (0 where a warp brought
    in area from outside). Bilinear resampling of these linear ramps is exact."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    planes = torch.stack([xs / (size - 1), ys / (size - 1), torch.ones_like(xs)])
    return planes.expand(batch, 3, size, size).clone()


def nearest_source_labels(images: torch.Tensor, masks: torch.Tensor, out_images: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The source mask at the pixel nearest each output pixel's source point (B, S, S), and where that is well
    defined: inside the source and not within 0.01 pixel of a tie between two pixels."""
    size = images.shape[-1]
    x, y = out_images[:, 0] * (size - 1), out_images[:, 1] * (size - 1)
    clear = ((x - x.floor() - 0.5).abs() > 0.01) & ((y - y.floor() - 0.5).abs() > 0.01)
    inside = (out_images[:, 2] > 0.999) & clear
    b = torch.arange(images.shape[0]).view(-1, 1, 1).expand_as(x)
    rows, cols = y.round().long().clamp(0, size - 1), x.round().long().clamp(0, size - 1)
    return masks[b, 0, rows, cols], inside


@pytest.mark.parametrize("settings", [
    dict(crop_scale=(0.5, 1.0), crop_ratio=(3 / 4, 4 / 3)),
    dict(crop_scale=(0.05, 0.2), crop_ratio=(1 / 2, 2.0)),
    dict(flip_p=1.0),
    dict(affine_p=1.0, degrees=30.0, translate=0.2, shear=10.0),
    dict(crop_scale=(0.3, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_p=0.5, affine_p=0.7, degrees=30.0),
], ids=["crop", "small_crop", "flip", "affine", "all"])
def test_the_geometry_keeps_the_mask_on_its_pixels(settings):
    """A random-noise mask: every pixel is an edge, so a shift of a fraction of a pixel shows. The crop used to
    resize the mask on another grid than the image, and the steps together resampled it once each (up to 1.3 source
    pixels off)."""
    size, batch = 48, 12
    images = coordinate_images(batch, size)
    masks = (torch.rand(batch, 1, size, size) > 0.5).to(torch.float64)
    out_images, out_masks = TrainAugmentation(size, **{**OFF, **settings})(images, masks)
    expected, defined = nearest_source_labels(images, masks, out_images)
    assert defined.float().mean() > 0.5
    assert torch.equal(out_masks[:, 0][defined], expected[defined])
    assert not out_masks[:, 0][out_images[:, 2] < 1e-3].any()  # warped in from outside: background


def test_the_whole_pipeline_keeps_a_thresholded_channel_its_mask():
    """Channel 2 a smooth bump and the mask that bump > 0.5: after crop, flip and affine, the mask still is
    channel 2 > 0.5 wherever the bump is more than the 0.71 pixel of a nearest resampling away from 0.5; colour
    jitter off, it would move the threshold."""
    size, batch = 64, 16
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    slope = 1 / size  # per pixel
    bump = torch.stack([(0.5 + slope * (20 - ((xs - cx) ** 2 + (ys - cy) ** 2).sqrt())).clamp(0, 1)
                        for cx, cy in torch.randint(16, 48, (batch, 2)).tolist()])
    images = coordinate_images(batch, size)
    images[:, 2] = bump
    masks = (bump > 0.5).to(torch.float64)[:, None]
    aug = TrainAugmentation(size, affine_p=1.0, flip_p=0.5, degrees=30.0, jitter_p=0.0)
    torch.manual_seed(3)
    out_images, out_masks = aug(images, masks)
    torch.manual_seed(3)
    inside = aug(coordinate_images(batch, size), masks)[0][:, 2] > 0.999  # not blended with area from outside
    assert not torch.equal(out_masks, masks)
    clear = inside & ((out_images[:, 2] - 0.5).abs() > 0.75 * slope)  # 0.75 source pixel from the bump's edge
    assert clear.float().mean() > 0.7
    assert torch.equal(out_masks[:, 0][clear], (out_images[:, 2] > 0.5).to(torch.float64)[clear])


def test_colour_jitter_leaves_masks_alone():
    images = torch.rand(6, 3, 32, 32)
    masks = (torch.rand(6, 1, 32, 32) > 0.5).float()
    out_images, out_masks = TrainAugmentation(32, **{**OFF, "jitter_p": 1.0})(images, masks)
    assert torch.equal(out_masks, masks)
    assert not torch.allclose(out_images, images, atol=1e-3)
