"""All valid triplets of a batch, optionally only those that violate the margin."""
from __future__ import annotations

from typing import Optional

import torch

from metric.distances.base_distance import BaseDistance
from metric.miners.base_miner import TripletIndices, positive_negative_masks
from metric.miners.margin_miner import MarginMiner
from metric.registry import MINERS


def all_valid_triplets(labels: torch.Tensor) -> TripletIndices:
    """Every (a, p, n) with label[p] == label[a], p ≠ a, label[n] ≠ label[a], ordered by (a, p, n).

    Built from the B×B pair masks: each positive pair is repeated once per negative of its anchor, so memory
    is O(B² + T), never B×B×B.
    """
    positives, negatives = positive_negative_masks(labels)
    pair_anchor, pair_positive = positives.nonzero(as_tuple=True)
    negative_of_anchor = negatives.nonzero(as_tuple=True)[1]  # grouped by anchor, ascending
    negatives_per_anchor = negatives.sum(1)
    first_negative = torch.cumsum(negatives_per_anchor, 0) - negatives_per_anchor
    repeats = negatives_per_anchor[pair_anchor]
    anchor = pair_anchor.repeat_interleave(repeats)
    positive = pair_positive.repeat_interleave(repeats)
    # Position of each triplet inside its positive pair's run of negatives: 0, 1, ..., repeats − 1.
    run_start = (torch.cumsum(repeats, 0) - repeats).repeat_interleave(repeats)
    within_run = torch.arange(anchor.shape[0], device=labels.device) - run_start
    negative = negative_of_anchor[first_negative[anchor] + within_run]
    return TripletIndices(anchor, positive, negative)


@MINERS.register("batch_all")
class BatchAllMiner(MarginMiner):
    """All valid triplets; with ``margin``, only those with ``gap + margin > 0`` (non-zero triplet loss)."""

    def __init__(self, distance: Optional[BaseDistance] = None, margin: Optional[float] = None) -> None:
        super().__init__(distance)
        if margin is not None and not margin >= 0:  # NaN too: it would keep no triplet
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = margin

    def keep(self, gap: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(gap, dtype=torch.bool) if self.margin is None else gap + self.margin > 0

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        if self.margin is None:
            return all_valid_triplets(labels)  # ordered by (a, p, n), with no distance needed
        return super().mine(embeddings, labels)
