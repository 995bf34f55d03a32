"""The co-segmentation objective: weighted segmentation losses (from smp.losses) + the IS-Triplet pixel loss."""
from __future__ import annotations

import math
import numbers
from typing import Mapping, Optional

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from metric._checks import check_finite, check_shape
from metric.distances.base_distance import at_least_float32
from metric.losses import ISTripletLoss
from metric.registry import Registry

SEGMENTATION_LOSSES: Registry = Registry("segmentation loss")
SEGMENTATION_LOSSES.register("dice")(lambda: smp.losses.DiceLoss("binary", from_logits=True))
SEGMENTATION_LOSSES.register("ce")(lambda: smp.losses.SoftBCEWithLogitsLoss())
SEGMENTATION_LOSSES.register("focal")(lambda: smp.losses.FocalLoss("binary"))
SEGMENTATION_LOSSES.register("jaccard")(lambda: smp.losses.JaccardLoss("binary", from_logits=True))


IGNORE = 255


def pool_labels(masks: torch.Tensor, size: tuple[int, int], ignore_index: int = IGNORE) -> torch.Tensor:
    """(B, H, W) 0/1 masks → (B, h, w) labels of the embedding grid: 1 (or 0) where the cell is all foreground
    (or all background), ``ignore_index`` where it straddles the boundary, so no pixel triplet uses a mixed cell."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.long()
    share = F.adaptive_avg_pool2d(masks.unsqueeze(1).float(), size).squeeze(1)
    labels = torch.full_like(share, ignore_index, dtype=torch.long)
    labels[share <= 0.0] = 0
    labels[share >= 1.0] = 1
    return labels


class CosegObjective(nn.Module):
    """``Σ_name w_name · seg_loss_name(mask_logits, masks) + w_triplet · IS-Triplet(embeddings, masks, groups)``.

    ``forward(mask_logits (B, 1, H, W), embeddings (B, D, h, w) | None, masks (B, H, W) in {0, 1},
    groups (B,) | None)`` returns every term and their weighted sum under ``loss``; masks holding other values
    (0/255) are refused. Terms with weight 0 are not computed. Embeddings may be coarser than the masks (the
    model's ``embedding_stride``): labels are pooled to their grid (:func:`pool_labels`). The triplet sampler sees
    the predicted probabilities, so "hard" sampling can favour mis-predicted pixels. Terms are computed in float32,
    or float64 for float64 inputs."""

    def __init__(self, seg_weights: Mapping[str, float], triplet_weight: float = 0.0,
                 triplet: Optional[ISTripletLoss] = None) -> None:
        super().__init__()
        weights = {**seg_weights, "triplet": triplet_weight}
        not_numbers = [f"{k} {v!r}" for k, v in weights.items()
                       if isinstance(v, bool) or not isinstance(v, (numbers.Real, torch.Tensor))
                       or isinstance(v, torch.Tensor) and v.numel() != 1]
        if not_numbers:
            raise TypeError(f"loss weights must be numbers, got {', '.join(not_numbers)}")
        bad = [f"{k} {v}" for k, v in weights.items() if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ValueError(f"loss weights must be finite and >= 0, got {', '.join(bad)}")
        self.seg_weights = {k: float(v) for k, v in seg_weights.items() if v}
        self.seg_losses = nn.ModuleDict({k: SEGMENTATION_LOSSES.create(k) for k in self.seg_weights})
        self.triplet_weight = float(triplet_weight)
        if self.triplet_weight:
            if triplet is None:
                raise ValueError("triplet_weight > 0 needs an ISTripletLoss")
            if triplet.reduction == "none":
                raise ValueError("the IS-Triplet loss must reduce its per-triplet losses to one number: reduction "
                                 "'none' would make the objective a vector; use 'mean', 'mean_nonzero' or 'sum'")
            if triplet.ignore_index in (0, 1):
                raise ValueError(f"the IS-Triplet loss's ignore_index {triplet.ignore_index} is one of the objective's "
                                 f"labels (0 background, 1 foreground); it marks the embedding cells on a mask "
                                 f"boundary: use another value, e.g. {IGNORE}")
        self.triplet = triplet if self.triplet_weight else None
        if not self.seg_weights and not self.triplet_weight:
            raise ValueError("the objective has no term with a non-zero weight")

    def forward(self, mask_logits: torch.Tensor, embeddings: Optional[torch.Tensor], masks: torch.Tensor,
                groups: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        size = check_shape(mask_logits, ["B", "1", "H", "W"], "mask_logits")
        check_shape(masks, ["B", "H", "W"], "masks")
        if masks.shape != (size["B"], size["H"], size["W"]):
            raise ValueError(f"masks must have shape {(size['B'], size['H'], size['W'])} to match mask_logits, "
                             f"got {tuple(masks.shape)}")
        if not size["B"]:
            raise ValueError("mask_logits must hold at least one image, got an empty batch")
        if ((masks != 0) & (masks != 1)).any():
            values = torch.unique(masks)
            hint = ("there is no void (ignore) label: make each such pixel background or foreground"
                    if (values == 1).any() else "e.g. masks of 0/255 need (masks > 0)")
            raise ValueError(f"masks must hold only 0 (background) and 1 (foreground), got values "
                             f"{values[:8].tolist()}; {hint}")
        logits = at_least_float32(mask_logits)
        target = masks.unsqueeze(1).to(logits.dtype)
        terms = {name: loss(logits, target) for name, loss in self.seg_losses.items()}
        total = sum(self.seg_weights[k] * v for k, v in terms.items())
        if self.triplet is not None:
            if embeddings is None:
                raise ValueError("the IS-Triplet term needs the model's pixel embeddings")
            check_shape(embeddings, [str(size["B"]), "D", "h", "w"], "embeddings (one map per mask_logits image)")
            grid = tuple(embeddings.shape[-2:])
            check_finite(logits, "mask_logits")  # the sampler reads their probabilities
            probabilities = torch.sigmoid(logits.detach())
            if grid != tuple(logits.shape[-2:]):
                probabilities = F.adaptive_avg_pool2d(probabilities, grid)
            labels = pool_labels(masks, grid, self.triplet.ignore_index)
            terms["triplet"] = self.triplet(at_least_float32(embeddings), labels, groups=groups,
                                            probabilities=probabilities.squeeze(1))
            total = total + self.triplet_weight * terms["triplet"]
        terms["loss"] = total
        return terms
