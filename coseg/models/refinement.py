"""Group refinement through the metric head, at inference: the pixel embeddings of a whole group define a
common-foreground prototype and a background prototype, iterated with the mask head's predictions."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from metric._checks import check_count, check_shape


@dataclass(frozen=True)
class GroupRefinement:
    """``iterations`` rounds of: prototypes = probability-weighted means of the group's embeddings (foreground and
    background), then logits = the model's logits + ``weight`` × (cos to foreground − cos to background),
    upsampled to the mask size. ``iterations=0`` leaves the logits unchanged."""

    iterations: int = 2
    weight: float = 2.0

    def __post_init__(self) -> None:
        check_count(self.iterations, 0, "refinement iterations")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"refinement weight must be a finite number >= 0, got {self.weight}")

    def __call__(self, logits: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """logits (N, 1, H, W), unit embeddings (N, D, h, w) of one group → refined logits (N, 1, H, W)."""
        check_shape(logits, ["N", "1", "H", "W"], "logits")
        n = check_shape(embeddings, ["N", "D", "h", "w"], "embeddings")["N"]
        if n != logits.shape[0]:
            raise ValueError(f"logits and embeddings must cover the same images, got {logits.shape[0]} and {n}")
        emb = embeddings.float()
        refined = logits.float()
        for _ in range(self.iterations):
            p = F.adaptive_avg_pool2d(torch.sigmoid(refined), emb.shape[-2:])  # (N, 1, h, w)
            fg = F.normalize((emb * p).sum(dim=(0, 2, 3)), dim=0)
            bg = F.normalize((emb * (1 - p)).sum(dim=(0, 2, 3)), dim=0)
            score = torch.einsum("ndhw,d->nhw", emb, fg - bg).unsqueeze(1)
            score = F.interpolate(score, size=logits.shape[-2:], mode="bilinear", align_corners=False)
            refined = logits.float() + self.weight * score
        return refined.to(logits.dtype)
