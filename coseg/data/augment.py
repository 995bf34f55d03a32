"""Training augmentation on batches with kornia: one random geometry per sample for image and mask alike.

The image goes through the steps one by one; the mask is resampled once, through the composition of the steps'
matrices, so that it stays on its image's pixels (one nearest-neighbour step per transform would let it drift by up
to 1.3 pixels at its edges).

Runs where the tensors are (GPU when they are there). Randomness comes from torch's global generator, so
``torch.manual_seed`` makes it repeatable.
"""
from __future__ import annotations

import math

import kornia.augmentation as K
import torch
from kornia.geometry.transform import warp_perspective
from torch import nn

from metric._checks import check_count, check_shape


class TrainAugmentation(nn.Module):
    """Random resized crop, horizontal flip, affine warp (geometry shared by image and mask) and colour jitter
    (image only).

    ``forward(images (B, 3, S, S) float in [0, 1], masks (B, 1, S, S))`` returns the same shapes; images stay in
    [0, 1] and their dtype, masks come back binary (0/1) in theirs. The work is done in at least float32, also
    under autocast. Masks are resampled once with nearest neighbour, and areas warped in from outside the crop are
    background. Set a probability or range to 0 to turn a step off.
    """

    def __init__(
        self,
        image_size: int,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        affine_p: float = 0.5,
        degrees: float = 15.0,
        translate: float = 0.1,
        shear: float = 5.0,
        jitter_p: float = 0.8,
        brightness: float = 0.3,
        contrast: float = 0.3,
        saturation: float = 0.3,
        hue: float = 0.05,
    ) -> None:
        super().__init__()
        check_count(image_size, 1, "image_size")
        for name, (low, high), top, what in (("crop_scale", crop_scale, 1, "shares of the image's area a crop keeps"),
                                             ("crop_ratio", crop_ratio, math.inf, "a crop's width / height")):
            if not 0 < low <= high <= top:  # NaN too
                bound = " <= 1" if top == 1 else ""
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high{bound} ({what}), got {(low, high)}")
        # a crop 1 pixel thin has a singular matrix: the mask would not follow the image
        if crop_scale[0] * image_size ** 2 / max(crop_ratio[1], 1 / crop_ratio[0]) < 4:
            raise ValueError(f"crop_scale {crop_scale[0]} with crop_ratio {crop_ratio} makes crops of {image_size} px "
                             "images under 2 pixels a side: raise crop_scale or image_size")
        for name, p in (("flip_p", flip_p), ("affine_p", affine_p), ("jitter_p", jitter_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        self.image_size = image_size
        self.pipeline = K.AugmentationSequential(
            K.RandomResizedCrop((image_size, image_size), scale=crop_scale, ratio=crop_ratio),
            K.RandomHorizontalFlip(p=flip_p),
            K.RandomAffine(degrees=degrees, translate=(translate, translate), shear=shear, p=affine_p),
            K.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=jitter_p),
            data_keys=["input", "mask"],
        )

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = str(self.image_size)
        sizes = check_shape(images, ["B", "3", s, s], "images")
        check_shape(masks, [str(sizes["B"]), "1", s, s], "masks")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point in [0, 1], got {images.dtype}")
        # the geometry in at least float32 and outside autocast: the image's warps and the mask's composed matrix
        # computed in half precision (AMP) differ by enough to move the mask off its image's pixels
        work = torch.promote_types(images.dtype, torch.float32)
        with torch.autocast(images.device.type, enabled=False):
            out_images, inside = self.pipeline(images.to(work), torch.ones_like(masks, dtype=work))
            out_masks = warp_perspective(masks.to(work), self.pipeline.transform_matrix.to(work),
                                         (self.image_size, self.image_size), mode="nearest", align_corners=True)
        return out_images.clamp(0.0, 1.0).to(images.dtype), (out_masks * inside > 0.5).to(masks.dtype)
