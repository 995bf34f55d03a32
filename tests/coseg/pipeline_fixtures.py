"""Small data sets and stand-in models for pipeline tests."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from coseg.data import make_synthetic_coseg


def synthetic_set(root: Path, groups: int = 3, images: int = 4, size: int = 64) -> Path:
    return make_synthetic_coseg(root, num_groups=groups, images_per_group=images, size=size, seed=0)


def odd_sized_set(root: Path) -> Path:
    """iCoseg layout, 2 groups, images of different non-square sizes (masks at image size)."""
    rng = np.random.default_rng(0)
    for g, sizes in enumerate([[(50, 70), (64, 40)], [(33, 90)]]):
        for i, (h, w) in enumerate(sizes):
            img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            mask = np.zeros((h, w), np.uint8)
            mask[h // 4: h // 2, w // 3: w - 2] = 255
            (root / "images" / f"g{g}").mkdir(parents=True, exist_ok=True)
            (root / "ground_truth" / f"g{g}").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "images" / f"g{g}" / f"im{i}.jpg"), img)
            cv2.imwrite(str(root / "ground_truth" / f"g{g}" / f"im{i}.png"), mask)
    return root


class ConstantModel(torch.nn.Module):
    """Predicts foreground probability ``p`` everywhere."""

    output_stride = 32

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def predict(self, images: torch.Tensor, groups=None, flip: bool = False, edges=None) -> torch.Tensor:
        b, _, h, w = images.shape
        probs = torch.full((b, 1, h, w), self.p)
        return probs if edges is None else edges(probs, images)

    def predict_group(self, images: torch.Tensor, chunk_size: int = 16, refinement=None, flip: bool = False,
                      edges=None, statistics=None) -> torch.Tensor:
        return self.predict(images, edges=edges)
