"""Seeds of the DDP-sharded batch samplers: any integer seed draws batches, small seeds keep their streams."""
from __future__ import annotations

import pytest
import torch

from metric.class_tree import ClassTree
from metric.miners import SmartMiner
from metric.samplers import (ClassRepresentativeBatchSampler, HierarchicalClassBatchSampler, PKBatchSampler,
                             SmartMiningBatchSampler)
from metric.samplers.sharding import ShardedBatchSampler, epoch_generator

LABELS = torch.tensor([3, 3, 3, 7, 7, 100, 100, 100, 42, 42, 42, 42])  # not 0..C−1, one class smaller than K


def samplers(seed: int) -> list[ShardedBatchSampler]:
    """One of each sharded batch sampler (two ranks, P = 2, K = 3), seeded with ``seed``."""
    embeddings = torch.randn(LABELS.numel(), 4, generator=torch.Generator().manual_seed(0))
    miner = SmartMiner(num_neighbours=4, index="flat")
    miner.update(embeddings, LABELS)
    tree, _ = ClassTree.from_embeddings(embeddings, LABELS, num_levels=2)
    shared = dict(rank=1, world_size=2, seed=seed)
    return [PKBatchSampler(LABELS, 2, 3, drop_last=False, **shared),
            ClassRepresentativeBatchSampler(LABELS, 2, 3, **shared),
            HierarchicalClassBatchSampler(LABELS, 2, 3, tree=tree, **shared),
            SmartMiningBatchSampler(miner, LABELS.tolist(), triplets_per_batch=4, **shared)]


@pytest.mark.parametrize("seed", [8904900921422385297, 2**64 - 1, 2**70, -(2**63) - 5],
                         ids=["initial_seed", "max_uint64", "beyond_64_bits", "below_int64"])
def test_any_integer_seed_draws_batches(seed):
    """A 64-bit seed (``torch.initial_seed()``, ``random.getrandbits(64)``) overflowed the generator's seed at the
    first batch: 'Overflow when unpacking long long'."""
    for sampler in samplers(seed):
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert len(batches) == len(sampler) > 0 and all(len(b) == sampler.batch_size for b in batches)
            sampler.set_epoch(epoch)
            assert list(sampler) == batches, type(sampler).__name__


@pytest.mark.parametrize("seed, epoch", [(0, 0), (5, 3), (-5, 0), (-1, 2)])
def test_small_and_negative_seeds_keep_their_streams(seed, epoch):
    expected = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    assert torch.equal(torch.rand(8, generator=epoch_generator(seed, epoch)), torch.rand(8, generator=expected))
