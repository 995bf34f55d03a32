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
        return _normalized(x) @ _normalized(y).T

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (_normalized(x) * _normalized(y)).sum(1)


def _normalized(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm, zero rows kept zero: the norm floor 1e-12 is 0 in float16, so it is raised to
    the dtype's smallest normal number there (0/0 would give NaN)."""
    return F.normalize(x, dim=1, eps=max(1e-12, torch.finfo(x.dtype).tiny))
