"""All valid triplets of a batch, optionally only those that violate the margin."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from metric.distances.base_distance import BaseDistance
from metric.miners.base_miner import BaseTripletMiner, TripletIndices
from metric.registry import MINERS


def positive_negative_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) labels → (B, B) boolean masks: same label but not itself, and different label."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    itself = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~itself, ~same


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


# Elements of one anchor block's (anchors, B, B) gap tensor: bounds the miners' temporary memory (~64 MiB).
_BLOCK_ELEMENTS = 1 << 22


def triplets_where(
    distances: torch.Tensor, labels: torch.Tensor, distance: BaseDistance, keep: Callable[[torch.Tensor], torch.Tensor]
) -> TripletIndices:
    """Valid (a, p, n), ordered by (a, p, n), whose gap ``distance.gap(d(a,p), d(a,n))`` satisfies ``keep(gap)``
    (an elementwise boolean test), read from the batch's (B, B) pairwise ``distances``.

    Tests every (a, p, n) at once with broadcasting, over blocks of anchors so a block holds at most
    ``_BLOCK_ELEMENTS`` candidates: memory O(B² + T), never B×B×B, and no per-triplet index arithmetic.
    """
    b = labels.shape[0]
    # "Farness" (the distance, or minus a similarity): gap = far(a,p) − far(a,n), exactly distance.gap's value.
    far = distance.gap(distances, torch.zeros_like(distances))
    positives, negatives = positive_negative_masks(labels)
    rows = max(1, _BLOCK_ELEMENTS // max(1, b * b))
    found = []
    for start in range(0, b, rows):
        block = slice(start, min(start + rows, b))
        gaps = far[block].unsqueeze(2) - far[block].unsqueeze(1)  # (A, P, N)
        valid = positives[block].unsqueeze(2) & negatives[block].unsqueeze(1) & keep(gaps)
        a, p, n = valid.nonzero(as_tuple=True)
        found.append((a + start, p, n))
    if not found:
        return TripletIndices.empty(labels.device)
    return TripletIndices(*(torch.cat(parts) for parts in zip(*found)))


@MINERS.register("batch_all")
class BatchAllMiner(BaseTripletMiner):
    """All valid triplets; with ``margin``, only those with ``gap + margin > 0`` (non-zero triplet loss)."""

    def __init__(self, distance: Optional[BaseDistance] = None, margin: Optional[float] = None) -> None:
        super().__init__(distance)
        if margin is not None and margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = margin

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        if self.margin is None:
            return all_valid_triplets(labels)
        margin = self.margin
        return triplets_where(self.distance.pairwise(embeddings), labels, self.distance, lambda gap: gap + margin > 0)
