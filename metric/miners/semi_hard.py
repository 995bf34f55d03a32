"""Semi-hard triplets (FaceNet): the negative is farther than the positive but within the margin."""
from __future__ import annotations

from typing import Optional

import torch

from metric.distances.base_distance import BaseDistance
from metric.miners.margin_miner import MarginMiner
from metric.registry import MINERS


@MINERS.register("semi_hard")
class SemiHardMiner(MarginMiner):
    """Every valid (a, p, n) with d(a,p) < d(a,n) < d(a,p) + margin, i.e. −margin < gap < 0 (so it also holds
    for similarities). One triplet per such (a, p, n), not only the hardest negative per (a, p): the same set
    as pytorch-metric-learning's ``TripletMarginMiner(type_of_triplets="semihard")`` (which also keeps
    d(a,n) = d(a,p) + margin exactly)."""

    def __init__(self, margin: float = 0.1, distance: Optional[BaseDistance] = None) -> None:
        super().__init__(distance)
        if not margin > 0:  # NaN too
            raise ValueError(f"margin must be > 0 (no triplet is semi-hard otherwise), got {margin}")
        self.margin = margin

    def keep(self, gap: torch.Tensor) -> torch.Tensor:
        return (gap < 0) & (gap + self.margin > 0)
