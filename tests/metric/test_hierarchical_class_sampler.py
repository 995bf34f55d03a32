"""Anchor-neighbour batch sampler: groups follow the tree, blocks, determinism, DDP sharding."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from metric.class_tree import ClassTree
from metric.registry import BATCH_SAMPLERS
from metric.samplers.hierarchical_class_sampler import HierarchicalClassBatchSampler

# 8 classes (labels 0, 10, ..., 70) on a line in pairs of near classes; class 70 has a single sample.
CLASS_LABELS = torch.arange(8) * 10
CENTRES = torch.tensor([[0.0], [1.0], [10.0], [11.0], [20.0], [21.0], [30.0], [31.0]])
LABELS = torch.cat([CLASS_LABELS[:7].repeat_interleave(5), CLASS_LABELS[7:]])
NEAR_PAIRS = {frozenset((10 * k, 10 * k + 10)) for k in range(0, 8, 2)}


def _tree() -> ClassTree:
    return ClassTree.build(CENTRES, num_levels=3, classes=CLASS_LABELS)


def _block_classes(batch: list[int], m: int) -> list[int]:
    blocks = [batch[i : i + m] for i in range(0, len(batch), m)]
    for block in blocks:
        assert len({int(LABELS[i]) for i in block}) == 1, "a block mixes classes"
    return [int(LABELS[block[0]]) for block in blocks]


def _assert_anchor_neighbour_groups(classes: list[int], tree: ClassTree, per_anchor: int) -> None:
    """Loop reference: walk the batch; each group is an anchor then its nearest classes not seen before."""
    i = 0
    while i < len(classes):
        anchor = classes[i]
        order = [c for c in tree.nearest_classes(anchor, tree.num_classes - 1).tolist() if c not in classes[: i + 1]]
        expected = order[: per_anchor - 1][: len(classes) - i - 1]
        assert classes[i + 1 : i + 1 + len(expected)] == expected
        i += 1 + len(expected)


@pytest.mark.parametrize("per_anchor", [1, 2, 3])
def test_batches_are_anchor_neighbour_groups(per_anchor):
    tree = _tree()
    sampler = HierarchicalClassBatchSampler(LABELS, classes_per_batch=4, samples_per_class=3,
                                            classes_per_anchor=per_anchor, tree=tree, batches_per_epoch=20)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 20
    for batch in batches:
        assert len(batch) == sampler.batch_size == 12
        classes = _block_classes(batch, 3)
        assert len(set(classes)) == 4
        _assert_anchor_neighbour_groups(classes, tree, per_anchor)
    if per_anchor == 2:  # the pairs of near classes always come together
        pairs = {frozenset(b) for batch in batches for b in zip(*[iter(_block_classes(batch, 3))] * 2)}
        assert pairs <= NEAR_PAIRS


def test_blocks_draw_without_replacement_and_fill_small_classes():
    sampler = HierarchicalClassBatchSampler(LABELS, classes_per_batch=8, samples_per_class=4, tree=_tree())
    for batch in sampler:
        for k in range(8):
            block = batch[4 * k : 4 * k + 4]
            if int(LABELS[block[0]]) == 70:
                assert block == [35] * 4  # the one-sample class repeats its sample
            else:
                assert len(set(block)) == 4


def test_random_classes_until_a_tree_is_set_then_the_tree():
    sampler = HierarchicalClassBatchSampler(LABELS, classes_per_batch=4, samples_per_class=2, batches_per_epoch=50)
    random_groups = [_block_classes(b, 2) for b in sampler]
    assert all(len(set(c)) == 4 for c in random_groups)
    assert any(frozenset(c[:2]) not in NEAR_PAIRS for c in random_groups)
    sampler.set_tree(_tree())
    for batch in sampler:
        _assert_anchor_neighbour_groups(_block_classes(batch, 2), sampler.tree, 2)


def test_deterministic_per_seed_and_epoch():
    make = lambda seed: HierarchicalClassBatchSampler(LABELS, 4, 2, tree=_tree(), seed=seed)  # noqa: E731
    a, b = make(0), make(0)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b) and list(make(1)) != list(b)


def test_ddp_shards_split_each_global_batch():
    single = HierarchicalClassBatchSampler(LABELS, 4, 3, tree=_tree(), seed=3)
    ranks = [HierarchicalClassBatchSampler(LABELS, 4, 3, tree=_tree(), seed=3, rank=r, world_size=2) for r in (0, 1)]
    for s in [single, *ranks]:
        s.set_epoch(2)
    shards = [list(r) for r in ranks]
    assert len(shards[0]) == len(shards[1]) == len(single)
    assert all(len(batch) == ranks[0].batch_size == 6 for shard in shards for batch in shard)
    assert [b0 + b1 for b0, b1 in zip(*shards)] == list(single)


def test_registry_and_dataloader():
    dataset = TensorDataset(torch.arange(len(LABELS)), LABELS)
    sampler = BATCH_SAMPLERS.create("hierarchical", labels=LABELS, classes_per_batch=2, samples_per_class=2)
    batches = list(DataLoader(dataset, batch_sampler=sampler))
    assert len(batches) == len(LABELS) // 4 and all(x.shape == (4,) for x, _ in batches)


def test_errors():
    with pytest.raises(ValueError, match="divisible by world_size"):
        HierarchicalClassBatchSampler(LABELS, 3, 2, world_size=2)
    with pytest.raises(ValueError, match="exceeds the number of classes"):
        HierarchicalClassBatchSampler(LABELS, 9, 2)
    with pytest.raises(ValueError, match=r"classes_per_anchor must be in \[1, 8\]"):
        HierarchicalClassBatchSampler(LABELS, 4, 2, classes_per_anchor=0)
    other = ClassTree.build(CENTRES[:7], num_levels=2, classes=CLASS_LABELS[:7])
    with pytest.raises(ValueError, match="tree's classes must be the sampler's 8 classes"):
        HierarchicalClassBatchSampler(LABELS, 4, 2, tree=other)
