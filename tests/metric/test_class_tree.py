"""Class tree: level-by-level merging against loops and scipy, tree distances, nearest classes, statistics."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from metric.class_tree import ClassTree, average_linkage, class_statistics
from metric.distances.cosine import CosineSimilarity
from metric.distances.euclidean import EuclideanDistance
from tests.helpers import assert_close
from tests.reference.class_losses import class_tree_levels


def _partitions(tree: ClassTree) -> list[set[frozenset[int]]]:
    return [
        {frozenset(int(c) for c in torch.nonzero(row == k).flatten()) for k in row.unique().tolist()}
        for row in tree.assignments
    ]


@pytest.mark.parametrize("seed", range(4))
def test_levels_match_greedy_merging(seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(9, 3, generator=g, dtype=torch.float64)
    thresholds = [0.8, 1.5, 2.5]
    tree = ClassTree.build(centres, thresholds=thresholds)
    expected = class_tree_levels(centres, thresholds)
    assert _partitions(tree)[: len(expected)] == expected
    if len(expected[-1]) > 1:  # a root level joins what the thresholds left apart
        assert _partitions(tree)[-1] == {frozenset(range(9))} and tree.num_levels == 4
    assert_close(tree.thresholds[: len(expected)], torch.tensor([0.0] + thresholds, dtype=torch.float64))


def test_linkage_heights_match_scipy():
    hierarchy = pytest.importorskip("scipy.cluster.hierarchy")
    distance = pytest.importorskip("scipy.spatial.distance")
    centres = torch.randn(30, 4, dtype=torch.float64)
    _, heights = average_linkage(torch.cdist(centres, centres))
    expected = hierarchy.linkage(distance.pdist(centres.numpy()), method="average")[:, 2]
    assert_close(heights, torch.from_numpy(expected))


def test_merge_distances_form_an_ultrametric():
    centres = torch.randn(8, 2, dtype=torch.float64)
    tree = ClassTree.build(centres, num_levels=4)
    m = tree.merge_matrix()
    assert_close(m, m.T)
    assert_close(m.diagonal(), torch.zeros(8, dtype=torch.float64))
    for a, b, c in itertools.permutations(range(8), 3):
        assert m[a, c] <= max(m[a, b], m[b, c])
    assert tree.merge_distance(2, 5) == float(m[2, 5])
    # num_levels: L thresholds ascending to the root's height, where everything has joined.
    assert tree.num_levels == 4 and bool((tree.thresholds[1:] > tree.thresholds[:-1]).all())
    assert bool((tree.assignments[-1] == 0).all()) and float(m.max()) == float(tree.thresholds[-1])


def test_by_hand_on_a_line():
    centres = torch.tensor([[0.0], [1.0], [5.0], [6.0], [20.0]])
    tree = ClassTree.build(centres, thresholds=[2.0, 7.0], classes=torch.tensor([3, 4, 7, 8, 11]))
    # Level 1 (≤ 2): {3, 4}, {7, 8}, {11}; level 2 (≤ 7): {3, 4, 7, 8} at mean distance 5; root at (20+19+15+14)/4 = 17.
    assert tree.merge_distance(3, 4) == 2.0 and tree.merge_distance(4, 7) == 7.0
    assert tree.merge_distance(8, 11) == pytest.approx(17.0)
    assert tree.nearest_classes(3, 4).tolist() == [4, 7, 8, 11]
    assert tree.nearest_classes(11, 2).tolist() == [8, 7]  # all meet at the root: nearest centres first
    assert tree.nearest_classes(7, 0).tolist() == []


def test_one_class_and_equal_centres():
    tree = ClassTree.build(torch.randn(1, 3), num_levels=3)
    assert tree.merge_distance(0, 0) == 0.0 and tree.num_classes == 1
    twins = ClassTree.build(torch.ones(3, 2), num_levels=2)
    assert twins.merge_distance(0, 2) == pytest.approx(0.0, abs=1e-6) and twins.nearest_classes(1, 2).tolist() == [0, 2]


def test_class_statistics_match_loops():
    x = torch.randn(9, 3, dtype=torch.float64)
    labels = torch.tensor([5, 2, 5, 9, 2, 5, 2, 2, 5])  # class 9 has one sample
    classes, centres, spreads = class_statistics(x, labels)
    assert classes.tolist() == [2, 5, 9]
    for k, c in enumerate([2, 5, 9]):
        members = [x[i] for i in range(9) if labels[i] == c]
        assert_close(centres[k], sum(members) / len(members))
        pairs = [float((u - v).norm()) for i, u in enumerate(members) for j, v in enumerate(members) if i != j]
        assert_close(spreads[k], sum(pairs) / len(pairs) if pairs else 0.0)
    squared = class_statistics(x, labels, EuclideanDistance(squared=True))[2]
    assert float(squared[0]) > 0 and not math.isclose(float(squared[0]), float(spreads[0]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_class_statistics_of_16_bit_embeddings_are_those_of_their_values_in_float32(dtype):
    """Centres and spreads were rounded to 16 bits, and with them the tree's thresholds and the hierarchical margins."""
    x, labels = torch.randn(30, 4).to(dtype), torch.arange(30) % 5
    got, expected = class_statistics(x, labels), class_statistics(x.float(), labels)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype and torch.equal(a, b)
    tree, wide = ClassTree.from_embeddings(x, labels, 3)[0], ClassTree.from_embeddings(x.float(), labels, 3)[0]
    assert tree.thresholds.dtype == torch.float32 and torch.equal(tree.thresholds, wide.thresholds)
    centres = expected[1].to(dtype)
    built = ClassTree.build(centres, num_levels=3).thresholds  # from 16-bit centres: float32 thresholds too
    assert built.dtype == torch.float32 and torch.equal(
        built, ClassTree.build(centres.float(), num_levels=3).thresholds)


def test_class_statistics_name_the_problem_with_their_inputs():
    labels = torch.arange(6) % 2
    with pytest.raises(TypeError, match="embeddings must be a floating-point tensor, got torch.int64"):  # was mean()'s
        class_statistics(torch.ones(6, 3, dtype=torch.long), labels)
    with pytest.raises(TypeError, match="labels must be integers"):
        class_statistics(torch.randn(6, 3), labels.float())
    with pytest.raises(ValueError, match=r"embeddings must have at least one dimension \(D >= 1\)"):  # named 'x'
        class_statistics(torch.randn(6, 0), labels)
    with pytest.raises(ValueError, match="embeddings is empty: class statistics need"):  # spoke of a batch sampler
        class_statistics(torch.randn(0, 3), labels[:0])


def test_from_embeddings_starts_at_the_mean_spread():
    x = torch.cat([torch.randn(5, 2) * 0.1 + torch.tensor([float(k), 0.0]) for k in range(4)])
    labels = torch.arange(4).repeat_interleave(5)
    tree, spreads = ClassTree.from_embeddings(x, labels, num_levels=2)
    top = float(tree.thresholds[-1])
    assert_close(tree.thresholds[1], spreads.mean() + (top - spreads.mean()) / 2)


def test_errors():
    with pytest.raises(ValueError, match="similarity"):
        ClassTree.build(torch.randn(3, 2), num_levels=2, distance=CosineSimilarity())
    with pytest.raises(ValueError, match="exactly one of"):
        ClassTree.build(torch.randn(3, 2), num_levels=2, thresholds=[1.0])
    with pytest.raises(ValueError, match="strictly ascending"):
        ClassTree.build(torch.randn(3, 2), thresholds=[1.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        class_statistics(torch.tensor([[float("nan")]]), torch.tensor([0]))
    tree = ClassTree.build(torch.randn(3, 2), num_levels=2)
    with pytest.raises(ValueError, match="class 3 is not in the class tree"):
        tree.merge_distance(0, 3)
    with pytest.raises(ValueError, match="n must be in"):
        tree.nearest_classes(0, 3)
