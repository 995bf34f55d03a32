"""Batch samplers take numpy integers (seeds, epochs and sizes read from arrays) as the ints they hold, and refuse
sizes that are no whole number with an error naming the argument instead of failing inside torch (or, for a
fractional period, silently using another one)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metric.miners.smart_miner import SmartMiner
from metric.samplers import (
    ClassRepresentativeBatchSampler,
    HierarchicalClassBatchSampler,
    PKBatchSampler,
    SmartMiningBatchSampler,
)

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])


def flat_miner() -> SmartMiner:
    miner = SmartMiner(num_neighbours=3, index="flat")
    miner.update(torch.randn(len(LABELS), 4, generator=torch.Generator().manual_seed(0)), LABELS)
    return miner


def epoch_batches(sampler, epoch) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_numpy_seed_epoch_and_sizes_act_as_their_ints():
    """``seed=np.int64(3)`` or ``set_epoch(np.int64(1))`` raised OverflowError (the seed mix is taken modulo 2⁶⁴),
    ``samples_per_class=np.int64(2)`` a TypeError from torch's split."""
    expected = epoch_batches(PKBatchSampler(LABELS, 2, 2, seed=3), 1)
    assert epoch_batches(PKBatchSampler(LABELS, np.int64(2), np.int64(2), seed=np.int64(3)), np.int64(1)) == expected
    assert epoch_batches(PKBatchSampler(LABELS, 2, 2, rank=np.int64(1), world_size=np.int64(2), seed=3), 1) == [
        batch[2:] for batch in expected]
    expected = epoch_batches(SmartMiningBatchSampler(flat_miner(), LABELS, 4, seed=5), 2)
    assert epoch_batches(SmartMiningBatchSampler(flat_miner(), LABELS, np.int32(4), seed=np.uint8(5)), np.int64(2)) \
        == expected


@pytest.mark.parametrize("make, match", [
    (lambda: PKBatchSampler(LABELS, 2, 2.0), "samples_per_class must be an integer >= 1, got 2.0"),
    (lambda: PKBatchSampler(LABELS, 2.0, 2), "classes_per_batch must be an integer >= 1, got 2.0"),
    (lambda: PKBatchSampler(LABELS, 2, True), "samples_per_class must be an integer >= 1, got True"),
    (lambda: PKBatchSampler(LABELS, 2, 2, rank=True, world_size=2), r"rank must be in \[0, 2\), got True"),
    (lambda: ClassRepresentativeBatchSampler(LABELS, 2, 2, iterations_per_representative=1.5),
     "iterations_per_representative must be an integer >= 1, got 1.5"),
    (lambda: HierarchicalClassBatchSampler(LABELS, 2, 2, batches_per_epoch=2.5),
     "batches_per_epoch must be an integer >= 1, got 2.5"),
    (lambda: HierarchicalClassBatchSampler(LABELS, 2, 2, classes_per_anchor=1.5),
     r"classes_per_anchor must be in \[1, 4\]"),
    (lambda: SmartMiningBatchSampler(flat_miner(), LABELS, 2.0), "triplets_per_batch must be an integer >= 1"),
])
def test_sizes_that_are_no_whole_number_are_refused_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_fractional_seed_or_epoch_is_refused():
    with pytest.raises(TypeError, match="seed must be an integer, got 1.5"):
        PKBatchSampler(LABELS, 2, 2, seed=1.5)
    with pytest.raises(TypeError, match="epoch must be an integer, got 2.0"):
        PKBatchSampler(LABELS, 2, 2).set_epoch(2.0)
