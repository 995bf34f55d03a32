"""Cosine similarity (a similarity: larger = closer)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from metric.distances.base_distance import BaseDistance, at_least_float32
from metric.registry import DISTANCES


@DISTANCES.register("cosine")
class CosineSimilarity(BaseDistance):
    """xᵀy / (‖x‖·‖y‖) in [−1, 1]; inputs are L2-normalised first (a zero vector gives similarity 0)."""

    is_inverted = True

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return _normalized(x)

    def _pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x @ y.T

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x * y).sum(1)


def _normalized(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (in float32 at least), zero rows kept zero. The norm floor suits the dtype of
    ``x``: 1e-12 is 0 in float16 (0/0 would give NaN), so it is raised to float16's smallest normal number there,
    which also keeps a zero row's gradient, 1/floor, finite in float16."""
    return F.normalize(at_least_float32(x), dim=1, eps=max(1e-12, torch.finfo(x.dtype).tiny))
