"""Global loss: loops, gradients, edge cases, the module on given or mined triplets."""
from __future__ import annotations

import pytest
import torch

from metric.distances.cosine import CosineSimilarity
from metric.distances.euclidean import EuclideanDistance
from metric.losses.global_loss import GlobalLoss, global_loss
from metric.miners.base_miner import TripletIndices
from metric.registry import LOSSES
from tests.helpers import assert_close, gradcheck
from tests.reference import class_losses as reference


@pytest.mark.parametrize("margin,lam", [(0.4, 0.8), (0.0, 1.0), (2.0, 0.5)])
def test_matches_loops(margin, lam):
    d_pos, d_neg = torch.rand(6, dtype=torch.float64), torch.rand(6, dtype=torch.float64) + 0.3
    expected = reference.global_loss(d_pos.tolist(), d_neg.tolist(), margin, lam)
    assert_close(global_loss(d_pos, d_neg, margin, lam), expected)


def test_by_hand_and_inverted():
    d_pos, d_neg = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0])
    # σ²₊ = 1, σ²₋ = 0, μ₊ − μ₋ = 0 → 1 + 0.5·max(0, 0 + 0.25)
    assert_close(global_loss(d_pos, d_neg, 0.25, 0.5), 1.125)
    # As similarities the hinge reads μ₋ − μ₊ + t: the same here, and 0 when positives are more similar.
    assert_close(global_loss(d_pos, d_neg, 0.25, 0.5, is_inverted=True), 1.125)
    assert_close(global_loss(d_pos + 1, d_neg, 0.25, 0.5, is_inverted=True), 1.0)


def test_one_triplet_has_no_variance():
    assert_close(global_loss(torch.tensor([0.7]), torch.tensor([0.2]), 0.1, 2.0), 2.0 * 0.6)


def test_no_triplet_gives_zero_and_a_gradient():
    x = torch.randn(3, 4, requires_grad=True)
    loss = GlobalLoss()(x, torch.tensor([0, 1, 2]))  # all singletons: nothing to mine
    loss.backward()
    assert loss.item() == 0.0 and float(x.grad.abs().sum()) == 0.0


def test_gradcheck():
    d_pos, d_neg = torch.rand(5), torch.rand(5)
    assert gradcheck(lambda p, n: global_loss(p, n, 0.5, 0.8), [d_pos, d_neg])
    x, labels = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    assert gradcheck(lambda e: GlobalLoss(margin=1.0)(e, labels), [x])


def test_module_on_given_triplets_and_on_all_triplets(dtype):
    x, labels = torch.randn(6, 4, dtype=dtype), torch.tensor([0, 0, 0, 1, 1, 2])
    loss = LOSSES.create("global", margin=0.3, lam=0.5)
    triplets = TripletIndices(torch.tensor([0, 1, 3]), torch.tensor([1, 2, 4]), torch.tensor([3, 5, 0]))
    sq = EuclideanDistance(squared=True)
    a, p, n = triplets
    assert_close(loss(x, labels, triplets), global_loss(sq.paired(x[a], x[p]), sq.paired(x[a], x[n]), 0.3, 0.5))
    # Default: every valid triplet, in the same order as a loop over (a, p, n).
    d_pos, d_neg = [], []
    for i in range(6):
        for j in range(6):
            for k in range(6):
                if i != j and labels[i] == labels[j] and labels[k] != labels[i]:
                    d_pos.append(float(((x[i] - x[j]) ** 2).sum()))
                    d_neg.append(float(((x[i] - x[k]) ** 2).sum()))
    assert_close(loss(x, labels), reference.global_loss(d_pos, d_neg, 0.3, 0.5))


def test_module_with_a_similarity():
    x, labels = torch.randn(5, 4), torch.tensor([0, 0, 1, 1, 1])
    cos = CosineSimilarity()
    loss = GlobalLoss(distance=cos, margin=0.2, lam=1.0)
    triplets = TripletIndices(torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([2, 0]))
    a, p, n = triplets
    expected = global_loss(cos.paired(x[a], x[p]), cos.paired(x[a], x[n]), 0.2, 1.0, is_inverted=True)
    assert_close(loss(x, labels, triplets), expected)


def test_errors():
    with pytest.raises(ValueError, match="NaN"):
        GlobalLoss()(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="d_pos and d_neg must have the same length"):
        global_loss(torch.rand(3), torch.rand(2), 0.1, 1.0)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        GlobalLoss(lam=-1.0)
