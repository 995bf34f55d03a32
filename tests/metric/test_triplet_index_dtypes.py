"""Triplets given to the losses as any integer dtype or as a plain (anchor, positive, negative) tuple give the loss of
the same int64 TripletIndices: uint8 indices used to select rows as a mask (silently, when none is 0), int8/int16
could not index at all."""
from __future__ import annotations

import warnings

import pytest
import torch

from metric.losses import GlobalLoss, HierarchicalTripletLoss, TripletMarginLoss
from metric.miners.base_miner import TripletIndices, check_triplet_indices
from metric.miners.batch_all import all_valid_triplets
from tests.helpers import assert_close

SMALL_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32]


def _losses() -> dict[str, torch.nn.Module]:
    hierarchical = HierarchicalTripletLoss(beta=0.5, num_levels=3, reduction="none")
    torch.manual_seed(1)
    hierarchical.update_tree(torch.randn(12, 3), torch.arange(12) % 3)
    return {"triplet_margin": TripletMarginLoss(margin=0.5, reduction="none"), "global": GlobalLoss(),
            "hierarchical": hierarchical}


@pytest.mark.parametrize("dtype", SMALL_DTYPES)
@pytest.mark.parametrize("n", [4, 12])  # 4: T = N, paired distances; 12: T > N, the table of pair distances
def test_triplets_of_any_integer_dtype_give_the_int64_loss(dtype, n):
    torch.manual_seed(0)
    x, labels = torch.randn(n, 3), torch.arange(n) % 3
    if n == 4:  # no index 0, T = N: a uint8 mask selected every row, silently
        triplets = TripletIndices(torch.tensor([1, 2, 3, 1]), torch.tensor([3, 1, 2, 3]),
                                  torch.tensor([2, 3, 2, 2]))
    else:
        triplets = all_valid_triplets(labels)
    small = TripletIndices(*(t.to(dtype) for t in triplets))
    for name, loss in _losses().items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the deprecated uint8-as-mask indexing warns
            assert_close(loss(x, labels, small), loss(x, labels, triplets), msg=name)


def test_a_plain_tuple_is_taken_as_anchor_positive_negative():
    torch.manual_seed(0)
    x, labels = torch.randn(6, 3), torch.arange(6) % 2
    triplets = all_valid_triplets(labels)
    for name, loss in _losses().items():
        assert_close(loss(x, labels, tuple(triplets)), loss(x, labels, triplets), msg=name)
        assert_close(loss(x, labels, list(triplets)), loss(x, labels, triplets), msg=name)


def test_check_returns_int64_and_rejects_what_is_not_three_index_tensors():
    triplets = check_triplet_indices((torch.tensor([0], dtype=torch.uint8),) * 3, 1)
    assert isinstance(triplets, TripletIndices) and all(t.dtype == torch.int64 for t in triplets)
    # a TripletIndices of 2 or 4 triplets is not mistaken for a tuple of the wrong length
    for t in (2, 4):
        assert len(check_triplet_indices(TripletIndices(*(torch.zeros(t, dtype=torch.long),) * 3), 1)) == t
    with pytest.raises(TypeError, match="anchor, positive, negative"):
        check_triplet_indices((torch.tensor([0]),) * 2, 1)
    with pytest.raises(TypeError, match="anchor, positive, negative"):
        check_triplet_indices(torch.zeros(3, 1, dtype=torch.long), 1)
    with pytest.raises(TypeError, match="integer row indices"):
        check_triplet_indices((torch.tensor([0.0]),) * 3, 1)
