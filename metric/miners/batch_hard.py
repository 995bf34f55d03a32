"""Batch-hard triplets: per anchor, its farthest positive and its closest negative."""
from __future__ import annotations

import torch

from metric.miners.base_miner import BaseTripletMiner, TripletIndices
from metric.miners.base_miner import positive_negative_masks
from metric.registry import MINERS


@MINERS.register("batch_hard")
class BatchHardMiner(BaseTripletMiner):
    """One triplet per anchor: (a, hardest positive, hardest negative); anchors without a positive or without
    a negative are skipped; of equally hard ones the smaller batch index wins (``argmax``/``argmin`` take the first;
    Euclidean distances of integer-valued embeddings are exact, so their ties are). ``BatchHardMiner(distance=None)``
    (Euclidean by default)."""

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        if labels.numel() == 0:  # argmax over an empty row is an error
            return TripletIndices.empty(labels.device)
        values = self.distance.pairwise(embeddings)
        far = self.distance.farness(values)
        positives, negatives = positive_negative_masks(labels)
        hardest_positive = far.masked_fill(~positives, float("-inf")).argmax(1)
        hardest_negative = far.masked_fill(~negatives, float("inf")).argmin(1)
        anchor = (positives.any(1) & negatives.any(1)).nonzero(as_tuple=True)[0]
        return TripletIndices(anchor, hardest_positive[anchor], hardest_negative[anchor])
