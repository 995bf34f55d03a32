"""Training augmentation on batches with kornia: one random geometry per sample for image and mask alike.

The image goes through the steps one by one; the mask is resampled once, through the composition of the steps'
matrices, so that it stays on its image's pixels (one nearest-neighbour step per transform would let it drift by up
to 1.3 pixels at its edges).

Runs where the tensors are (GPU when they are there). Randomness comes from torch's global generator, so
``torch.manual_seed`` makes it repeatable.
"""
from __future__ import annotations

import kornia.augmentation as K
import torch
from kornia.geometry.transform import warp_perspective
from torch import nn

from metric._checks import check_shape


class TrainAugmentation(nn.Module):
    """Random resized crop, horizontal flip, affine warp (geometry shared by image and mask) and colour jitter
    (image only).

    ``forward(images (B, 3, S, S) float in [0, 1], masks (B, 1, S, S))`` returns the same shapes; images stay in
    [0, 1], masks come back binary (0/1) in their input dtype. Masks are resampled once with nearest neighbour,
    and areas warped in from outside the crop are background. Set a probability or range to 0 to turn a step off.
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
        out_images, inside = self.pipeline(images, torch.ones_like(masks, dtype=images.dtype))
        matrix = self.pipeline.transform_matrix.to(images.dtype)
        out_masks = warp_perspective(masks.to(images.dtype), matrix, (self.image_size, self.image_size),
                                     mode="nearest", align_corners=True) * inside
        return out_images.clamp(0.0, 1.0), (out_masks > 0.5).to(masks.dtype)
