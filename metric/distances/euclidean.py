"""Euclidean (L2) distance, optionally squared."""
from __future__ import annotations

import torch

from metric.distances.base_distance import BaseDistance
from metric.registry import DISTANCES


def safe_sqrt(squared: torch.Tensor) -> torch.Tensor:
    """sqrt of squared distances ≥ 0 with a finite gradient everywhere (0 at 0, e.g. a point and itself).

    Values below the dtype's smallest normal number read as its square root (1e-19 in float32)."""
    return squared.clamp(min=torch.finfo(squared.dtype).tiny).sqrt()


def pairwise_squared_euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, D), (m, D) → (n, m): ‖x_i − y_j‖² ≥ 0 as ‖x‖² + ‖y‖² − 2xᵀy: one matmul,
    never an n×m×D tensor.

    Both inputs are first moved by the mean row of ``y`` (distances do not change), so the round-off,
    about eps·‖x‖·‖y‖, scales with the rows' spread instead of their distance from the origin: far from it
    (e.g. ReLU features of norm 200 that differ by 0.1) the expansion alone returned noise in float32.
    Integer-valued ``y`` (e.g. ±1 hash codes) is moved by the rounded mean instead: integer-valued inputs stay
    integers, so their distances are exact (below 2²⁴ in float32) and equal ones tie exactly."""
    shift = y.detach().mean(0) if y.shape[0] else y.new_zeros(y.shape[1])  # the mean of no row is NaN
    first = y.detach()[:1]
    if torch.equal(first, first.round()) and torch.equal(y.detach(), y.detach().round()):  # the usual y: one row
        shift = shift.round()
    x, y = x - shift, y - shift
    # In place on the matmul's output: each extra pass over an n×m block costs as much as the matmul.
    squared = torch.addmm(y.pow(2).sum(1), x, y.T, alpha=-2)
    return squared.add_(x.pow(2).sum(1, keepdim=True)).clamp_(min=0)


@DISTANCES.register("euclidean")
class EuclideanDistance(BaseDistance):
    """‖x − y‖₂ (or ‖x − y‖₂² with ``squared=True``), in embedding units.

    Pairwise uses :func:`pairwise_squared_euclidean` (round-off about eps·‖x − ȳ‖·‖y − ȳ‖ on the squared
    distance, ȳ the mean row of ``y``, so a point's distance to itself can be ~sqrt(eps)·‖x − ȳ‖ in float32);
    paired uses the differences directly. Inputs scaled down against overflow (see :class:`BaseDistance`) scale
    :func:`safe_sqrt`'s floor up alike: it stays ~1e-37 of their norms.
    """

    def __init__(self, squared: bool = False, chunk_size: int = 4096) -> None:
        super().__init__(chunk_size=chunk_size)
        self.squared = squared

    def _rescaled(self, values: torch.Tensor, scale: float) -> torch.Tensor:
        # twice for squared: scale² may exceed the dtype's range, and inf·0 would turn a zero distance into NaN
        return values * scale * scale if self.squared else values * scale

    def _pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        squared = pairwise_squared_euclidean(x, y)
        return squared if self.squared else safe_sqrt(squared)

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        squared = (x - y).pow(2).sum(1)
        return squared if self.squared else safe_sqrt(squared)


@DISTANCES.register("squared_euclidean")
def squared_euclidean(chunk_size: int = 4096) -> EuclideanDistance:
    """``EuclideanDistance(squared=True)``: ‖x − y‖₂²."""
    return EuclideanDistance(squared=True, chunk_size=chunk_size)
