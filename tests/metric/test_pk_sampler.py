"""PK batch sampler: batch structure, epoch coverage, determinism, DDP sharding, errors."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from metric.registry import BATCH_SAMPLERS
from metric.samplers import PKBatchSampler
from metric.samplers.sharding import shard_blocks
from tests.reference import samplers as ref


def balanced(classes: int = 6, per_class: int = 4) -> torch.Tensor:
    return torch.arange(classes).repeat_interleave(per_class)[torch.randperm(classes * per_class)]


def uneven() -> torch.Tensor:
    sizes = [5, 3, 1, 7, 4, 9, 2, 6]
    return torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])[torch.randperm(sum(sizes))]


def epoch_batches(sampler: PKBatchSampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("labels", [balanced(), uneven()], ids=["balanced", "uneven"])
@pytest.mark.parametrize("drop_last", [True, False])
def test_every_batch_has_p_classes_of_k_samples(labels, drop_last):
    sampler = PKBatchSampler(labels, classes_per_batch=3, samples_per_class=2, drop_last=drop_last)
    batches = epoch_batches(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        assert len(batch) == sampler.batch_size == 6
        assert len(ref.class_blocks(batch, labels.tolist(), 2)) == 3


@pytest.mark.parametrize("p, k", [(2, 2), (3, 4), (6, 1)])
def test_every_sample_once_when_sizes_allow(p, k):
    labels = balanced(classes=6, per_class=8)
    for epoch in range(3):
        batches = epoch_batches(PKBatchSampler(labels, p, k, seed=1), epoch)
        assert ref.usage(batches) == {i: 1 for i in range(48)}


def test_uneven_classes_every_sample_at_least_once_without_drop_last():
    labels = uneven()
    sampler = PKBatchSampler(labels, 2, 3, drop_last=False)
    use = ref.usage(epoch_batches(sampler))
    assert set(use) == set(range(len(labels)))
    # Padding repeats at most K − 1 samples per class (plus fillers of leftover batches).
    assert sum(use.values()) == len(sampler) * 6


def test_small_class_repeats_to_fill_its_block():
    labels = torch.tensor([0, 0, 0, 0, 1, 2, 2, 2, 2])
    for batch in epoch_batches(PKBatchSampler(labels, 3, 4, drop_last=False)):
        blocks = ref.class_blocks(batch, labels.tolist(), 4)
        assert [4, 4, 4, 4] in blocks  # class 1's single sample fills its block


def test_deterministic_per_seed_and_epoch():
    labels = uneven()
    a, b = PKBatchSampler(labels, 2, 2, seed=3), PKBatchSampler(labels, 2, 2, seed=3)
    assert epoch_batches(a, 0) == epoch_batches(b, 0)
    assert epoch_batches(a, 1) == epoch_batches(b, 1)
    assert epoch_batches(a, 0) != epoch_batches(a, 1)
    assert epoch_batches(a, 0) != epoch_batches(PKBatchSampler(labels, 2, 2, seed=4), 0)


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("labels", [balanced(classes=7, per_class=6), uneven()], ids=["balanced", "uneven"])
@pytest.mark.parametrize("drop_last", [True, False])
def test_ddp_ranks_together_equal_one_process(world_size, labels, drop_last):
    single = PKBatchSampler(labels, 6, 2, seed=5, drop_last=drop_last)
    ranks = [PKBatchSampler(labels, 6, 2, rank=r, world_size=world_size, seed=5, drop_last=drop_last)
             for r in range(world_size)]
    for epoch in (0, 1):
        per_rank = [epoch_batches(s, epoch) for s in ranks]
        assert all(len(b) == len(s) == len(single) for b, s in zip(per_rank, ranks))
        assert ref.merge_ranks(per_rank) == epoch_batches(single, epoch)
        for batches in per_rank:
            for batch in batches:
                assert len(ref.class_blocks(batch, labels.tolist(), 2)) == 6 // world_size


def test_shard_blocks_splits_whole_blocks():
    blocks = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    assert [shard_blocks(blocks, r, 3) for r in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    with pytest.raises(ValueError, match="divisible by world_size"):
        shard_blocks(blocks, 0, 4)


def test_works_as_a_dataloader_batch_sampler():
    labels = balanced()
    loader = DataLoader(TensorDataset(torch.arange(24), labels), batch_sampler=PKBatchSampler(labels, 3, 2))
    for index, label in loader:
        assert torch.equal(label, labels[index]) and label.unique().numel() == 3


def test_registered_and_rejects_bad_settings():
    labels = balanced()
    assert isinstance(BATCH_SAMPLERS.create("pk", labels=labels, classes_per_batch=2, samples_per_class=2),
                      PKBatchSampler)
    with pytest.raises(ValueError, match=r"classes_per_batch \(3\) must be divisible by world_size \(2\)"):
        PKBatchSampler(labels, 3, 2, rank=0, world_size=2)
    with pytest.raises(ValueError, match="exceeds the number of classes"):
        PKBatchSampler(labels, 7, 2)
    with pytest.raises(ValueError, match="rank must be in"):
        PKBatchSampler(labels, 2, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match=">= 1"):
        PKBatchSampler(labels, 2, 0)
    for empty in (torch.tensor([], dtype=torch.long), []):  # a plain [] becomes a float tensor
        with pytest.raises(ValueError, match="empty"):
            PKBatchSampler(empty, 1, 1)
    with pytest.raises(TypeError, match="integers"):
        PKBatchSampler(labels.float(), 2, 2)
