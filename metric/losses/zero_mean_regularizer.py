"""DSML's zero-mean regulariser: pushes each embedding's components to sum to zero."""
from __future__ import annotations

import torch

from metric._checks import check_finite, check_finite_number, check_floating, check_shape
from metric.distances.base_distance import at_least_float32
from metric.losses.base_loss import BaseMetricLoss
from metric.reduction import Reduction
from metric.registry import LOSSES


def zero_mean_regularizer(embeddings: torch.Tensor) -> torch.Tensor:
    """(N, D) → (N,): |Σ_d h_d| per sample, in embedding units (float32 at least: sums overflow float16)."""
    check_shape(embeddings, ["N", "D"], "embeddings")
    check_floating(embeddings, "embeddings")
    check_finite(embeddings, "embeddings")
    return at_least_float32(embeddings).sum(1).abs()


@LOSSES.register("zero_mean")
class ZeroMeanRegularizer(BaseMetricLoss):
    """``forward(embeddings (N, D), labels (N,))`` → ``weight`` × reduced :func:`zero_mean_regularizer`.

    ``labels`` are checked but unused: the regulariser takes the same call as every loss so it can be summed
    with them."""

    def __init__(self, weight: float = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__(reduction)
        check_finite_number(weight, "weight")
        if weight < 0:  # it would reward ever larger sums: a loss without a minimum
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.weight = weight

    def compute_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.weight * zero_mean_regularizer(embeddings)
