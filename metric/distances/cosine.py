"""Cosine similarity (a similarity: larger = closer)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from metric.distances.base_distance import BaseDistance
from metric.registry import DISTANCES


@DISTANCES.register("cosine")
class CosineSimilarity(BaseDistance):
    """xᵀy / (‖x‖·‖y‖) in [−1, 1]; inputs are L2-normalised first (a zero vector gives similarity 0)."""

    is_inverted = True

    def _pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(y, dim=1).T

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (F.normalize(x, dim=1) * F.normalize(y, dim=1)).sum(1)
