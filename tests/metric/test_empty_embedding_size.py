"""Embeddings with D = 0 are refused with a clear error by every distance, loss and miner: SNR used to fail inside
``amax`` ("Expected reduction dim 1 to have non-zero size"), the others gave distance 0 between all samples and a
loss of exactly the margin."""
from __future__ import annotations

import pytest
import torch

from metric.distances import CosineSimilarity, EuclideanDistance, SNRDistance
from metric.losses import GlobalLoss, ISTripletLoss, SoftTripleLoss, TripletMarginLoss, TripletUpperBoundLoss
from metric.miners import BatchHardMiner, SemiHardMiner

LABELS = torch.tensor([0, 0, 1, 1])
EMPTY = torch.zeros(4, 0)


@pytest.mark.parametrize("distance", [EuclideanDistance(), EuclideanDistance(squared=True), CosineSimilarity(),
                                      SNRDistance()], ids=["euclidean", "squared", "cosine", "snr"])
def test_distances_refuse_zero_dimensions(distance):
    with pytest.raises(ValueError, match=r"at least one dimension \(D >= 1\)"):
        distance.pairwise(EMPTY)
    with pytest.raises(ValueError, match=r"at least one dimension \(D >= 1\)"):
        distance.paired(EMPTY, EMPTY)


@pytest.mark.parametrize("component", [TripletMarginLoss(), TripletMarginLoss(miner=SemiHardMiner()), GlobalLoss(),
                                       SoftTripleLoss(2, 1, 2), TripletUpperBoundLoss(2, 1), BatchHardMiner()],
                         ids=["triplet", "semi_hard", "global", "soft_triple", "upper_bound", "batch_hard"])
def test_losses_and_miners_refuse_zero_dimensions(component):
    with pytest.raises(ValueError, match=r"at least one dimension \(D >= 1\)"):
        component(EMPTY, LABELS)


def test_pixel_loss_refuses_zero_dimensions():
    with pytest.raises(ValueError, match=r"embeddings must have at least one dimension \(D >= 1\), "
                                         r"got shape \(2, 0, 3, 3\)"):
        ISTripletLoss(k_per_class=2)(torch.zeros(2, 0, 3, 3), torch.randint(2, (2, 3, 3)))
