"""Means of rows grouped by an index: the class / group means several components need."""
from __future__ import annotations

import torch


def index_means(values: torch.Tensor, index: torch.Tensor, count: int) -> torch.Tensor:
    """(count, D) mean of the rows of ``values`` (N, D) with each integer ``index`` (N,) in [0, count), of any integer
    dtype (e.g. uint8 class labels); 0 where an index has no row."""
    index = index.long()  # index_add_ takes int32/int64 only
    sums = values.new_zeros(count, values.shape[1]).index_add_(0, index, values)
    counts = torch.bincount(index, minlength=count).clamp(min=1).to(values.dtype)
    return sums / counts.unsqueeze(1)
