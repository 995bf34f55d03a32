"""Base class of the image-level metric losses: checks inputs, reduces per-item losses."""
from __future__ import annotations

import torch
from torch import nn

from metric._checks import check_labelled_embeddings
from metric.reduction import Reduction, check_reduction, reduce_loss


class BaseMetricLoss(nn.Module):
    """``forward(embeddings (N, D), labels (N,)) → loss``; subclasses write ``compute_loss`` returning per-item
    losses (any 1-D length, e.g. one per triplet or per sample), reduced by ``reduction``."""

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction

    def compute_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_inputs(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        check_labelled_embeddings(embeddings, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.check_inputs(embeddings, labels)
        return reduce_loss(self.compute_loss(embeddings, labels), self.reduction)
