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


# Elements of one anchor block's (anchors, P, N) gap tensor: bounds the miners' temporary memory (~64 MiB).
_BLOCK_ELEMENTS = 1 << 22


def triplets_where(
    distances: torch.Tensor, labels: torch.Tensor, distance: BaseDistance, keep: Callable[[torch.Tensor], torch.Tensor]
) -> TripletIndices:
    """Valid (a, p, n) whose gap ``distance.gap(d(a,p), d(a,n))`` satisfies ``keep(gap)`` (an elementwise boolean
    test), read from the batch's (B, B) pairwise ``distances``; ordered by the anchor's class, then (a, p, n).

    Class by class, tests every (a, p, n) of the class's anchors at once with broadcasting over only their
    positives and negatives (Σ_c n_c²·(B − n_c) candidates, a quarter of B³ for two balanced classes), in blocks
    of anchors holding at most ``_BLOCK_ELEMENTS`` candidates: memory O(B² + T), and no per-triplet arithmetic.
    """
    # "Farness" (the distance, or minus a similarity): gap = far(a,p) − far(a,n), exactly distance.gap's value.
    far = distance.gap(distances, torch.zeros_like(distances))
    order = torch.argsort(labels, stable=True)
    counts = torch.unique_consecutive(labels[order], return_counts=True)[1]
    found = []
    for members in torch.split(order, counts.tolist()):
        others = (labels != labels[members[0]]).nonzero().squeeze(1)
        if len(members) < 2 or not len(others):
            continue
        of_anchors = far[members]
        to_positive, to_negative = of_anchors[:, members], of_anchors[:, others]
        not_self = ~torch.eye(len(members), dtype=torch.bool, device=labels.device)
        rows = max(1, _BLOCK_ELEMENTS // (len(members) * len(others)))
        for start in range(0, len(members), rows):
            block = slice(start, start + rows)
            gaps = to_positive[block].unsqueeze(2) - to_negative[block].unsqueeze(1)  # (A, P, N)
            a, p, n = (keep(gaps) & not_self[block].unsqueeze(2)).nonzero(as_tuple=True)
            found.append((members[a + start], members[p], others[n]))
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
