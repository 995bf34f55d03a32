"""Hierarchical triplet loss: loops, the tree-driven module, gradients, edge cases."""
from __future__ import annotations

import pytest
import torch

from metric.class_tree import ClassTree, class_statistics
from metric.distances.cosine import CosineSimilarity
from metric.distances.euclidean import EuclideanDistance
from metric.losses.hierarchical_triplet_loss import (
    HierarchicalTripletLoss,
    class_tree_margins,
    hierarchical_triplet_loss,
)
from metric.miners.base_miner import TripletIndices
from metric.miners.batch_all import all_valid_triplets
from metric.registry import LOSSES
from tests.helpers import assert_close, gradcheck
from tests.reference.class_losses import hierarchical_triplet_losses


def _dataset(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([10, 20, 30, 40]).repeat_interleave(4)
    means = torch.tensor([[0.0, 0.0], [0.5, 0.0], [3.0, 0.0], [3.0, 0.6]], dtype=torch.float64)
    x = means.repeat_interleave(4, dim=0) + 0.2 * torch.randn(16, 2, generator=g, dtype=torch.float64)
    return x, labels


def test_function_matches_loops():
    x = torch.randn(6, 3, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    merge = [[0.0, 0.5, 2.0], [0.5, 0.0, 2.0], [2.0, 2.0, 0.0]]
    spreads = [0.3, 0.1, 0.4]
    triplets = all_valid_triplets(labels)
    margins = torch.tensor(merge, dtype=torch.float64) - torch.tensor(spreads, dtype=torch.float64).unsqueeze(1)
    losses = hierarchical_triplet_loss(x, labels, triplets, margins, 0.2, EuclideanDistance())
    expected = hierarchical_triplet_losses(x, labels, triplets, merge, spreads, 0.2)
    assert_close(losses, torch.tensor(expected, dtype=torch.float64))
    assert (losses > 0).any()


def test_module_uses_the_tree_of_update_tree(dtype):
    x, labels = _dataset()
    loss = LOSSES.create("hierarchical_triplet", beta=0.1, num_levels=3, reduction="none")
    tree = loss.update_tree(x, labels)
    assert isinstance(tree, ClassTree) and tree.classes.tolist() == [10, 20, 30, 40]
    spreads = class_statistics(x, labels)[2]
    # A batch with three of the four classes and labels that are not 0..k−1.
    batch = torch.tensor([0, 1, 8, 9, 10, 12, 13])
    triplets = all_valid_triplets(labels[batch])
    losses = loss(x[batch].to(dtype), labels[batch], triplets)
    merge = {a: {b: tree.merge_distance(a, b) for b in (10, 20, 30, 40)} for a in (10, 20, 30, 40)}
    s = dict(zip((10, 20, 30, 40), spreads.tolist()))
    assert_close(losses, torch.tensor(hierarchical_triplet_losses(x[batch], labels[batch], triplets, merge, s, 0.1)))
    # Near classes (10, 20) merge early: their triplets get smaller margins than far ones (10, 30).
    assert tree.merge_distance(10, 20) < tree.merge_distance(10, 30)
    # Mining all triplets by default gives the same mean.
    mean_loss = HierarchicalTripletLoss(beta=0.1, num_levels=3)
    mean_loss.update_tree(x, labels)
    assert_close(mean_loss(x[batch], labels[batch]), losses.double().mean())


def test_tree_margins_matrix():
    x, labels = _dataset()
    tree, spreads = ClassTree.from_embeddings(x, labels, num_levels=2)
    m = class_tree_margins(tree, spreads, torch.tensor([30, 10]))
    assert_close(m, tree.merge_matrix(torch.tensor([30, 10])) - spreads[[2, 0]].unsqueeze(1))


def test_gradcheck():
    x, labels = _dataset()
    loss = HierarchicalTripletLoss(beta=0.3, num_levels=2)
    loss.update_tree(x, labels)
    batch = torch.tensor([0, 1, 4, 5, 8])
    assert gradcheck(lambda e: loss(e, labels[batch]), [x[batch] + 0.01 * torch.randn(5, 2, dtype=torch.float64)])


@pytest.mark.parametrize("batch_labels", [[10, 20, 30], [40, 40, 40], [20]], ids=["singletons", "one-class", "one"])
def test_no_valid_triplet_gives_zero_and_a_gradient(batch_labels):
    x, labels = _dataset()
    loss = HierarchicalTripletLoss(num_levels=2)
    loss.update_tree(x, labels)
    e = torch.randn(len(batch_labels), 2, requires_grad=True)
    value = loss(e, torch.tensor(batch_labels))
    value.backward()
    assert value.item() == 0.0 and e.grad is not None and (e.grad == 0).all()


def test_errors():
    x, labels = _dataset()
    loss = HierarchicalTripletLoss()
    with pytest.raises(RuntimeError, match="call update_tree"):
        loss(x, labels)
    with pytest.raises(ValueError, match="similarity"):
        HierarchicalTripletLoss(distance=CosineSimilarity())
    loss.update_tree(x, labels)
    with pytest.raises(ValueError, match="class 50 is not in the class tree"):
        loss(x[:2], torch.tensor([10, 50]), TripletIndices.empty())
    with pytest.raises(ValueError, match="NaN"):
        loss(torch.full((2, 2), float("nan")), torch.tensor([10, 20]))
