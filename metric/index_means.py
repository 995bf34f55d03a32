"""Means of rows grouped by an index: the class / group means several components need."""
from __future__ import annotations

import torch

from metric.distances.base_distance import computing_dtype


def index_means(values: torch.Tensor, index: torch.Tensor, count: int) -> torch.Tensor:
    """(count, D) mean of the rows of ``values`` (N, D) with each integer ``index`` (N,) in [0, count), of any integer
    dtype (e.g. uint8 class labels); 0 where an index has no row. 16-bit values are summed in float32 (a float16
    sum overflows beyond 65504) and their means returned in their dtype."""
    index = index.long()  # index_add_ takes int32/int64 only
    wide = values.to(computing_dtype(values.dtype))
    sums = wide.new_zeros(count, values.shape[1]).index_add_(0, index, wide)
    counts = torch.bincount(index, minlength=count).clamp(min=1).to(sums.dtype)
    means = sums / counts.unsqueeze(1)
    return means.to(values.dtype) if sums.dtype != values.dtype else means
