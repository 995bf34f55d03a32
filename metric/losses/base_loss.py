"""Base class of the image-level metric losses: checks inputs, reduces per-item losses."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from metric._checks import check_labelled_embeddings
from metric.reduction import Reduction, check_reduction, reduce_loss


class BaseMetricLoss(nn.Module):
    """``forward(embeddings (N, D), labels (N,)) → loss``; subclasses write ``compute_loss`` returning per-item
    losses (any 1-D length, e.g. one per triplet or per sample), reduced by ``reduction``.

    Buffers named in ``setting_buffers`` hold settings (margins, fixed centroids), not weights: they move with the
    module to another device but keep their dtype when it is cast (``.half()`` would round them); the losses cast
    them to the embeddings' computing dtype. Parameters (e.g. learned centres) follow the cast."""

    setting_buffers: tuple[str, ...] = ()

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> BaseMetricLoss:
        settings = {name: getattr(self, name) for name in self.setting_buffers}
        super()._apply(fn, recurse)
        for name, before in settings.items():
            after = getattr(self, name)
            if before is not None and after.dtype != before.dtype:
                setattr(self, name, before.to(after.device))
        return self

    def compute_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_inputs(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        check_labelled_embeddings(embeddings, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.check_inputs(embeddings, labels)
        return reduce_loss(self.compute_loss(embeddings, labels), self.reduction)
