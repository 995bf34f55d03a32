"""The small reduction protocol shared by all losses: mean | sum | mean_nonzero | none."""
from __future__ import annotations

from typing import Literal

import torch

from metric.distances.base_distance import computing_dtype

Reduction = Literal["mean", "sum", "mean_nonzero", "none"]
REDUCTIONS = ("mean", "sum", "mean_nonzero", "none")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got '{reduction}'")


def reduce_loss(losses: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Reduce per-item losses (any shape).

    ``mean_nonzero`` averages over items with a loss > 0 (0 if none); a NaN item is kept, so it makes the mean
    NaN as it does for ``mean`` and ``sum`` instead of vanishing from it. Empty inputs give a zero that is still
    attached to the graph when ``losses`` is, so ``backward()`` always works.
    """
    check_reduction(reduction)
    if reduction == "none":
        return losses
    if losses.numel() == 0:
        return losses.sum()
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.mean()
    kept = ~(losses <= 0)  # items at or below 0 (e.g. a similarity's −cos) are left out of the sum too; NaN is not
    total = torch.where(kept, losses, 0).sum(dtype=computing_dtype(losses.dtype))  # a float16 sum overflows at 65504
    return (total / kept.sum().clamp(min=1)).to(losses.dtype)


def reduce_positive_sum(total: torch.Tensor, count: int, reduction: Reduction) -> torch.Tensor:
    """:func:`reduce_loss` of ``count`` positive losses known only by their sum ``total`` (so ``mean_nonzero`` is
    the mean); ``none`` has no per-item losses to return."""
    check_reduction(reduction)
    if reduction == "none":
        raise ValueError("reduction 'none' needs the per-item losses, not their sum")
    return total if reduction == "sum" else total / max(count, 1)
