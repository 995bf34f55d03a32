"""Adversarial audit of the metric core called directly: NaN per-item losses under ``mean_nonzero``, NaN miner
margins, and ``ignore_index`` values that the labels' integer dtype cannot hold."""
from __future__ import annotations

import math

import pytest
import torch

from metric.distances.euclidean import EuclideanDistance
from metric.losses.triplet_margin_loss import TripletMarginLoss
from metric.miners.batch_all import BatchAllMiner
from metric.miners.pixel_sampler import boundary_mask, pixel_hardness, sample_pixels
from metric.miners.semi_hard import SemiHardMiner
from metric.reduction import reduce_loss


def test_mean_nonzero_keeps_nan_items_and_still_drops_those_at_or_below_zero():
    assert reduce_loss(torch.tensor([2.0, 0.0, -1.0, 4.0]), "mean_nonzero").item() == 3.0
    # A NaN item was dropped like a zero: the mean of the others came out finite.
    assert math.isnan(reduce_loss(torch.tensor([2.0, float("nan"), 4.0]), "mean_nonzero").item())


def test_overflowing_squared_distances_give_the_same_nan_for_every_reduction():
    # Squared distances of float32 embeddings of norm ~1e20 exceed float32: inf − inf per triplet. "mean" and
    # "sum" gave NaN, "mean_nonzero" gave 0.0 — a batch reported as having no violated triplet.
    x = 1e20 * torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for reduction in ("mean", "sum", "mean_nonzero"):
        loss = TripletMarginLoss(margin=0.1, distance=EuclideanDistance(squared=True), reduction=reduction)
        assert math.isnan(loss(x, labels).item()), reduction


@pytest.mark.parametrize("make", [lambda m: BatchAllMiner(margin=m), lambda m: SemiHardMiner(margin=m)],
                         ids=["batch-all", "semi-hard"])
def test_miners_refuse_a_nan_margin(make):
    # gap + NaN > 0 is never true: the miner kept no triplet and the loss was a silent 0.
    with pytest.raises(ValueError, match="margin must be"):
        make(float("nan"))


def _labels_with(value: int, dtype: torch.dtype) -> torch.Tensor:
    """(2, 6, 7) labels of classes 0, 1 and ``value`` in blocks, in ``dtype``."""
    labels = torch.zeros(2, 6, 7, dtype=torch.long)
    labels[:, :3, 4:] = 1
    labels[0, 3:, :3] = value
    labels[1, 4:, 2:] = value
    return labels.to(dtype)


@pytest.mark.parametrize("dtype, value, ignore_index", [(torch.uint8, 255, -1), (torch.int8, -1, 255)])
def test_an_ignore_index_the_labels_dtype_cannot_hold_ignores_no_pixel(dtype, value, ignore_index):
    # torch compares a uint8 tensor with -1 as with 255 (and int8 with 255 as with -1): the sampler drew pixels of
    # that class but gave them no boundary, so the "hard" strategy weighed them as interior pixels.
    narrow = _labels_with(value, dtype)
    wide = narrow.long()  # holds both the class and the ignore index: the meaning the labels have
    assert torch.equal(boundary_mask(narrow, 1, ignore_index), boundary_mask(wide, 1, ignore_index))
    assert bool(boundary_mask(narrow, 1, ignore_index)[narrow == value].any())
    assert torch.equal(pixel_hardness(narrow, None, 1, ignore_index), pixel_hardness(wide, None, 1, ignore_index))
    # With foreground probabilities the class is no 0/1 label: refused, not taken for ignored pixels.
    probabilities = torch.rand(narrow.shape, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="labels must be 0/1"):
        sample_pixels(narrow, 4, "hard", probabilities, ignore_index=ignore_index)
