"""Edge-aware refinement of predicted masks at inference: a guided filter (He et al.) of the foreground
probability, guided by the colour image the model saw, so that mask boundaries snap to image edges.

The decoder's mask is smooth at the scale of its 1/4-resolution features; the filter fits, in each window, the
probability as a linear function of the image's colours and averages those fits, which keeps the mask's large
structure and moves its boundaries onto colour edges. It runs on the model's input resolution, with its
coefficients computed on a ``subsample``-times coarser grid (the fast guided filter), so its cost does not depend on
the size of the original images. The coarse grid samples the images at its cells' centres, where the bilinear
upsampling of the coefficients puts them back, so the filter commutes with mirroring and moves nothing (kornia's
``guided_blur`` reads every ``subsample``-th pixel: its masks moved (subsample − 1) / 2 pixels right and down, and
a mirrored image's mask was not the mirrored mask).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.filters import box_blur

from coseg.config import EDGE_EPS, EDGE_RADIUS
from metric._checks import check_count, check_shape
from metric.distances.base_distance import no_autocast


@dataclass(frozen=True)
class EdgeFilter:
    """Guided filter of foreground probabilities by their images.

    ``radius``: window radius as a fraction of the image's longer side (0.08 → 18 px at 224 px; chosen on the
    validation groups of two iCoseg runs, where 0.03–0.14 all helped). ``eps``: regularisation in squared
    intensity units (images in [0, 1]): larger flattens the fit, so weak edges move the mask less. ``subsample``:
    the coefficients are computed on a grid this many times coarser."""

    radius: float = EDGE_RADIUS
    eps: float = EDGE_EPS
    subsample: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.radius <= 1:
            raise ValueError(f"edge filter radius is a fraction of the image side in (0, 1], got {self.radius}")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"edge filter eps must be a finite number > 0, got {self.eps}")
        check_count(self.subsample, 1, "edge filter subsample")

    def window(self, height: int, width: int) -> int:
        """Window side in pixels (odd) for images of ``height`` × ``width``."""
        return 2 * max(1, round(self.radius * max(height, width))) + 1

    def kernel(self, height: int, width: int, subsample: int) -> tuple[int, int]:
        """The window's (rows, columns) in pixels for images of ``height`` × ``width`` with coefficients on a
        ``subsample`` times coarser grid (a k-pixel window spans (k − 1) // subsample + 1 cells of the grid):
        :meth:`window`'s radius in cells rounded half up, so an odd number of cells (an even number is not centred:
        the mask moved by ``subsample`` pixels), narrowed on an axis too short for it (the window's borders are
        mirrored once, so on a grid of L cells it spans at most 2L − 1 of them)."""
        radius = (self.window(height, width) - 1 + subsample) // (2 * subsample)

        def fitted(side: int) -> int:
            cells = min(2 * radius + 1, 2 * max(side // subsample, 1) - 1)
            return subsample * (cells - 1) + 1

        return fitted(height), fitted(width)

    def __call__(self, probs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """probs (N, 1, H, W) in [0, 1], images (N, 3, H, W) in [0, 1] → filtered probs (N, 1, H, W) in [0, 1]."""
        size = check_shape(images, ["N", "3", "H", "W"], "images")
        check_shape(probs, [str(size["N"]), "1", str(size["H"]), str(size["W"])], "probs (as the images)")
        if not images.is_floating_point():  # eps is in squared [0, 1] units: 0-255 images would be filtered wrongly
            raise TypeError(f"edge filter images must be float in [0, 1] (the model's input), got dtype {images.dtype}")
        # in float32 even under autocast: the window variances are differences of close numbers
        with no_autocast(images):
            return self._filtered(probs, images, min(self.subsample, size["H"], size["W"]))

    def _filtered(self, probs: torch.Tensor, images: torch.Tensor, subsample: int) -> torch.Tensor:
        """:meth:`__call__` on checked inputs, with coefficients on a ``subsample`` times coarser grid."""
        size = images.shape[-2:]
        dtype = torch.promote_types(probs.dtype, torch.float32)  # half precision is filtered in float32
        guide = images.to(dtype)
        cells = tuple((k - 1) // subsample + 1 for k in self.kernel(*size, subsample))
        grid = tuple(max(side // subsample, 1) for side in size)
        coarse_guide, coarse_p = _resized(guide, grid), _resized(probs.to(dtype), grid)
        n, _, h, w = coarse_guide.shape

        def mean(x: torch.Tensor) -> torch.Tensor:
            """Window means (N, C, h, w) on the coarse grid, its borders mirrored."""
            return box_blur(x, cells, "reflect")

        mean_i, mean_p = mean(coarse_guide), mean(coarse_p)  # (n, 3, h, w), (n, 1, h, w)
        pairs = (coarse_guide[:, :, None] * coarse_guide[:, None]).flatten(1, 2)  # (n, 9, h, w)
        var_i = mean(pairs) - (mean_i[:, :, None] * mean_i[:, None]).flatten(1, 2)
        cov_ip = mean(coarse_guide * coarse_p) - mean_i * mean_p
        eye = torch.eye(3, dtype=dtype, device=guide.device)
        regularised = var_i.permute(0, 2, 3, 1).reshape(n, h, w, 3, 3) + self.eps * eye
        a = torch.linalg.solve(regularised, cov_ip.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (n, 3, h, w)
        b = mean_p - (a * mean_i).sum(1, keepdim=True)
        mean_a, mean_b = _resized(mean(a), size), _resized(mean(b), size)
        return ((mean_a * guide).sum(1, keepdim=True) + mean_b).clamp_(0, 1).to(probs.dtype)


def _resized(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``x`` (N, C, H, W) resampled bilinearly to ``size`` with half-pixel centres (unchanged at its own size): the
    coarse grid's cells sample the image at their centres, and come back there."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)
