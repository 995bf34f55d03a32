"""Audit of the metric core's shared building blocks: 16-bit sums in ``reduce_loss`` and ``index_means``, the class
tree's threshold and start checks and its cuts against scipy on tied centres, the reductions against their naive
definitions, and the count checks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metric._checks import check_count, check_finite_number
from metric.class_tree import ClassTree
from metric.index_means import index_means
from metric.losses.triplet_margin_loss import TripletMarginLoss
from metric.reduction import reduce_loss
from tests.helpers import assert_close


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mean_nonzero_of_16_bit_losses_is_their_mean(dtype):
    """The kept losses were summed in 16 bits: 70 000 losses of 1 gave NaN (inf / inf) in float16, 1 000 losses of
    100 gave inf, where ``mean`` gave 1 and 100."""
    many = torch.ones(70_000, dtype=dtype, requires_grad=True)
    loss = reduce_loss(many, "mean_nonzero")
    assert loss.dtype == dtype and loss.item() == 1.0
    loss.backward()
    assert bool(torch.isfinite(many.grad).all()) and float(many.grad.float().sum()) > 0
    large = torch.full((1000,), 100.0, dtype=dtype)
    large[::2] = 0.0
    assert reduce_loss(large, "mean_nonzero").item() == 100.0


def test_index_means_of_float16_rows_summing_beyond_65504_is_their_mean():
    """The rows were summed in float16: 1 000 rows of 100 in one class gave an infinite mean."""
    values = torch.full((1000, 2), 100.0, dtype=torch.float16)
    index = torch.tensor([0, 2]).repeat(500)
    means = index_means(values, index, 3)
    assert means.dtype == torch.float16
    assert means.tolist() == [[100.0, 100.0], [0.0, 0.0], [100.0, 100.0]]


@pytest.mark.parametrize("thresholds", [[float("nan")], [1.0, float("inf")], [0.5, float("nan"), 2.0]])
def test_build_refuses_thresholds_that_are_not_finite(thresholds):
    """NaN thresholds gave a tree whose levels were all NaN; an infinite one a level at d_H = inf (infinite
    hierarchical margins)."""
    with pytest.raises(ValueError, match="thresholds must be finite, positive and strictly ascending"):
        ClassTree.build(torch.tensor([[0.0], [1.0], [3.0]]), thresholds=thresholds)


@pytest.mark.parametrize("start, match", [(float("nan"), "start must be a finite number"),
                                          (-5.0, "start must be a distance >= 0")])
def test_build_refuses_a_start_that_is_no_distance(start, match):
    """A NaN start gave NaN thresholds; start = −5 the thresholds [0, −2.5, 0, 2.5] (not ascending)."""
    with pytest.raises(ValueError, match=match):
        ClassTree.build(torch.tensor([[0.0], [1.0], [3.0]]), num_levels=3, start=start)


@pytest.mark.parametrize("seed", range(6))
def test_levels_of_tied_centres_are_greedy_average_linkage_cuts(seed):
    """Centres on a small integer grid (many equal distances, duplicated centres). With ties the levels depend on
    which tied pair joins first (scipy picks others), so check what any such cut is, by loops: nested levels, no two
    clusters of a level within its threshold (average distance), all joined past scipy's last height, the same tree
    when rebuilt."""
    hierarchy = pytest.importorskip("scipy.cluster.hierarchy")
    pdist = pytest.importorskip("scipy.spatial.distance").pdist
    g = torch.Generator().manual_seed(seed)
    centres = torch.randint(0, 3, (7, 2), generator=g).double()
    heights = hierarchy.linkage(pdist(centres.numpy()), method="average")[:, 2]
    thresholds = [h + 1e-3 for h in sorted(set(np.round(heights, 9).tolist()) - {0.0})]
    tree = ClassTree.build(centres, thresholds=thresholds)
    assert torch.equal(tree.assignments, ClassTree.build(centres, thresholds=thresholds).assignments)
    d = torch.cdist(centres, centres)
    for level, threshold in enumerate(thresholds, 1):
        row, below = tree.assignments[level].tolist(), tree.assignments[level - 1].tolist()
        assert all(row[i] == row[j] for i in range(7) for j in range(7) if below[i] == below[j])
        clusters = [[i for i in range(7) if row[i] == k] for k in set(row)]
        for a in range(len(clusters)):
            for b in range(a):
                pairs = [float(d[i, j]) for i in clusters[a] for j in clusters[b]]
                assert sum(pairs) / len(pairs) > threshold, (level, clusters[a], clusters[b])
    assert tree.merge_matrix().max() == pytest.approx(float(heights[-1]) + 1e-3)


def test_two_classes_make_one_level_at_their_distance():
    tree = ClassTree.build(torch.tensor([[0.0, 0.0], [3.0, 4.0]]), num_levels=3, start=1.0)
    assert tree.assignments[-1].tolist() == [0, 0] and tree.merge_distance(0, 1) == pytest.approx(5.0)
    assert tree.thresholds.tolist() == pytest.approx([0.0, 7 / 3, 11 / 3, 5.0])


@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero"])
def test_reductions_match_their_naive_definitions_and_empty_ones_backpropagate(reduction):
    losses = torch.tensor([[0.5, 0.0], [-0.25, 2.0]], requires_grad=True)
    values = losses.flatten().tolist()
    kept = [v for v in values if v > 0]
    expected = {"mean": sum(values) / 4, "sum": sum(values), "mean_nonzero": sum(kept) / len(kept)}[reduction]
    assert reduce_loss(losses, reduction).item() == pytest.approx(expected)
    empty = torch.zeros(0, 3, requires_grad=True)
    total = reduce_loss(empty, reduction)
    total.backward()
    assert total.item() == 0.0 and empty.grad.shape == (0, 3)
    zeros = torch.zeros(3, requires_grad=True)
    reduce_loss(zeros, reduction).backward()
    assert not math.isnan(float(zeros.grad.sum()))
    assert_close(reduce_loss(losses, "none"), losses)


def test_count_checks_take_numpy_integers_and_refuse_bools_by_name():
    check_count(np.int64(3), 1, "k")
    for bad in (True, 3.0, "3", None, np.float32(3.0)):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            check_count(bad, 1, "k")
    check_finite_number(np.float32(0.2), "margin")
    with pytest.raises(ValueError, match="margin must be a finite number, got nan"):
        check_finite_number(np.float32("nan"), "margin")


@pytest.mark.parametrize("value", ["0.2", None, True])
def test_a_margin_that_is_no_number_is_refused_by_name(value):
    """math.isfinite's own message ("must be real number, not str") did not say which argument; True passed as 1."""
    with pytest.raises(TypeError, match=r"margin must be a number, got"):
        check_finite_number(value, "margin")
    with pytest.raises(TypeError, match=r"margin must be a number, got"):
        TripletMarginLoss(margin=value)


def test_merge_distances_of_one_label_and_many_broadcast():
    """One label against all classes failed with "shape '[]' is invalid for input of size 3"."""
    tree = ClassTree.build(torch.tensor([[0.0], [1.0], [5.0]]), thresholds=[2.0], classes=torch.tensor([2, 5, 9]))
    row = tree.merge_distances(torch.tensor(5), tree.classes)
    assert row.tolist() == pytest.approx([2.0, 0.0, 4.5]) and torch.equal(row, tree.merge_matrix()[1])
    assert tree.merge_distances(tree.classes.unsqueeze(1), tree.classes).shape == (3, 3)


@pytest.mark.parametrize("n", [True, 1.0])
def test_nearest_classes_takes_a_whole_number_of_classes(n):
    """True was taken as 1; 1.0 failed in slicing with "slice indices must be integers"."""
    tree = ClassTree.build(torch.tensor([[0.0], [1.0], [5.0]]), num_levels=2)
    with pytest.raises(ValueError, match=r"n must be in \[0, 2\]"):
        tree.nearest_classes(0, n)
    assert tree.nearest_classes(0, np.int64(1)).tolist() == [1]
