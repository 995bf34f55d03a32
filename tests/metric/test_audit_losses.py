"""Adversarial audit of the metric losses: configurations and inputs earlier tests did not reach."""
from __future__ import annotations

import pytest
import torch

from metric.class_tree import class_statistics
from metric.distances.snr import SNRDistance
from metric.losses.global_loss import GlobalLoss
from metric.losses.hierarchical_triplet_loss import HierarchicalTripletLoss
from metric.losses.triplet_margin_loss import TripletMarginLoss
from metric.losses.triplet_upper_bound import TripletUpperBoundLoss
from metric.miners.base_miner import TripletIndices
from metric.miners.batch_all import BatchAllMiner
from metric.miners.batch_hard import BatchHardMiner
from metric.miners.semi_hard import SemiHardMiner
from tests.helpers import assert_close
from tests.reference.class_losses import hierarchical_triplet_losses


def _classes_on_a_line(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([7, 1000000, -3, 42]).repeat_interleave(3)
    centres = torch.tensor([[0.0, 0.0], [0.6, 0.0], [3.0, 0.0], [3.0, 0.8]], dtype=torch.float64)
    return centres.repeat_interleave(3, dim=0) + 0.4 * torch.randn(12, 2, generator=g, dtype=torch.float64), labels


def test_hierarchical_loss_with_a_margin_miner_keeps_the_tree_margins():
    # A miner that keeps only triplets of gap > −0.1 let the loss (β = 0.5 ≥ 0.1) take the triplet loss's
    # shortcut summed from pair counts, which knows one margin only: the tree margins were silently dropped.
    x, labels = _classes_on_a_line()
    for miner in (BatchAllMiner(margin=0.1), SemiHardMiner(margin=0.1)):
        loss = HierarchicalTripletLoss(beta=0.5, miner=miner, num_levels=3)
        loss.update_tree(x, labels)
        triplets = miner(x, labels)
        assert len(triplets) > 0
        classes, _, spreads = class_statistics(x, labels)
        names = classes.tolist()
        merge = {a: {b: loss.tree.merge_distance(a, b) for b in names} for a in names}
        expected = hierarchical_triplet_losses(x, labels, triplets, merge, dict(zip(names, spreads.tolist())), 0.5)
        assert_close(loss(x, labels), torch.tensor(expected, dtype=torch.float64).mean())


def test_hierarchical_loss_with_a_margin_miner_needs_a_tree():
    x, labels = _classes_on_a_line()
    loss = HierarchicalTripletLoss(beta=0.5, miner=BatchAllMiner(margin=0.1))
    with pytest.raises(RuntimeError, match="update_tree"):
        loss(x, labels)


def _four_rows() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 0, 1, 1])


@pytest.mark.parametrize("loss", [TripletMarginLoss(reduction="none"), GlobalLoss()], ids=["triplet", "global"])
@pytest.mark.parametrize("bad", [4, -1], ids=["past-the-end", "negative"])
def test_triplet_indices_outside_the_batch_are_refused(loss, bad):
    # With more triplets than rows the distances come from an N² table: positive 4 of a 4-row batch read
    # d(x_1, x_0) silently; a negative index wrapped around.
    x, labels = _four_rows()
    triplets = TripletIndices(torch.zeros(5, dtype=torch.long), torch.tensor([1, 1, 1, 1, bad]),
                              torch.tensor([2, 3, 2, 3, 2]))
    with pytest.raises(ValueError, match=r"triplets.positive must index the 4 rows"):
        loss(x, labels, triplets)


def test_triplet_indices_that_are_not_integers_are_refused():
    x, labels = _four_rows()
    mask = torch.tensor([True, False])
    with pytest.raises(TypeError, match="triplets.anchor must hold integer row indices"):
        TripletMarginLoss()(x, labels, TripletIndices(mask, torch.tensor([1, 1]), torch.tensor([2, 3])))


_NO_TRIPLET_LOSSES = {
    "batch-all": lambda: TripletMarginLoss(),
    "batch-hard": lambda: TripletMarginLoss(miner=BatchHardMiner()),
    "semi-hard-counted": lambda: TripletMarginLoss(miner=SemiHardMiner(margin=0.1), reduction="sum"),
    "snr": lambda: TripletMarginLoss(distance=SNRDistance(), reduction="mean_nonzero"),
    "global": lambda: GlobalLoss(),
    "upper-bound": lambda: TripletUpperBoundLoss(num_classes=5, embedding_size=4).double(),
}


@pytest.mark.parametrize("name", list(_NO_TRIPLET_LOSSES))
@pytest.mark.parametrize("labels", [[3, 3, 3, 3], [0, 1, 2, 4], [2]], ids=["one-class", "one-per-class", "one"])
def test_a_batch_without_a_valid_triplet_gives_zero_and_an_exactly_zero_gradient(name, labels):
    x = torch.randn(len(labels), 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    x[1:2] = x[:1]  # a duplicate too, where one exists: zero distances
    x.requires_grad_(True)
    loss = _NO_TRIPLET_LOSSES[name]()(x, torch.tensor(labels))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(x.grad, torch.zeros_like(x))
