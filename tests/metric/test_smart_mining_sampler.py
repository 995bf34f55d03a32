"""SmartMiningBatchSampler: batch layout, epochs, DDP sharding, lazy mining, DataLoader use, errors."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from metric.miners.adaptive_controller import AdaptiveHardnessController
from metric.miners.smart_miner import SmartMiner
from metric.registry import BATCH_SAMPLERS
from metric.samplers.smart_mining_sampler import SmartMiningBatchSampler


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(62) % 6
    labels[60:] = torch.tensor([6, 7])  # two single-sample classes: never anchors
    return torch.randn(6, 8, generator=g).repeat(9, 1)[labels] + 0.5 * torch.randn(62, 8, generator=g), labels


def updated_miner(data, **kwargs) -> SmartMiner:
    miner = SmartMiner(num_neighbours=10, index="flat", **kwargs)
    miner.update(*data)
    return miner


def test_batches_hold_valid_triplets_and_every_anchor_once(data) -> None:
    _, labels = data
    sampler = SmartMiningBatchSampler(updated_miner(data), labels, triplets_per_batch=8, drop_last=False)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 8  # 60 anchors → 7 full batches + 1 topped up
    anchors = []
    for batch in batches:
        assert len(batch) == sampler.batch_size == 24
        a, p, n = (torch.tensor(batch)[i] for i in SmartMiningBatchSampler.batch_triplets(len(batch)))
        assert torch.equal(labels[a], labels[p]) and not (labels[a] == labels[n]).any() and not (a == p).any()
        anchors += a.tolist()
    assert sorted(set(anchors)) == list(range(60))
    assert len(anchors) == 64


def test_drop_last_and_epochs(data) -> None:
    _, labels = data
    sampler = SmartMiningBatchSampler(updated_miner(data), labels, triplets_per_batch=8, seed=1)
    assert len(sampler) == len(list(sampler)) == 7
    first = list(sampler)
    assert list(sampler) == first  # same epoch, same batches (flat index, seeded fallbacks)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_no_drop_last_fills_a_batch_larger_than_twice_the_anchors() -> None:
    labels = torch.tensor([0, 0, 1])  # two anchors for a batch of 8: the top-up cycles through them
    miner = SmartMiner(num_neighbours=2, index="flat")
    miner.update(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), labels)
    sampler = SmartMiningBatchSampler(miner, labels, triplets_per_batch=8, drop_last=False)
    batches = list(sampler)
    assert len(sampler) == len(batches) == 1 and len(batches[0]) == sampler.batch_size == 24
    assert sorted(set(batches[0][:8])) == [0, 1]


def test_ranks_split_each_global_batch(data) -> None:
    _, labels = data
    miner = updated_miner(data)
    whole = list(SmartMiningBatchSampler(miner, labels, triplets_per_batch=8, seed=2))
    ranks = [list(SmartMiningBatchSampler(miner, labels, 8, rank=r, world_size=2, seed=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole)
    for batch, part0, part1 in zip(whole, *ranks):
        assert len(part0) == len(part1) == 12
        anchors = lambda b: b[: len(b) // 3]  # noqa: E731
        assert anchors(part0) + anchors(part1) == anchors(batch)


def test_mining_is_lazy_and_uses_the_current_offset(data) -> None:
    _, labels = data
    controller = AdaptiveHardnessController(max_offset=100.0)
    miner = updated_miner(data, controller=controller)
    batches = iter(SmartMiningBatchSampler(miner, labels, triplets_per_batch=6))
    next(batches)
    assert miner.last_stats["negative_fallbacks"] < 6
    controller.offset = 100.0  # no listed negative is that far: every negative falls back
    next(batches)
    assert miner.last_stats["negative_fallbacks"] == 6


def test_works_as_a_dataloader_batch_sampler_and_from_the_registry(data) -> None:
    embeddings, labels = data
    sampler = BATCH_SAMPLERS.create("smart_mining", miner=updated_miner(data), labels=labels, triplets_per_batch=5)
    assert isinstance(sampler, SmartMiningBatchSampler)
    loader = DataLoader(TensorDataset(embeddings, labels), batch_sampler=sampler)
    x, y = next(iter(loader))
    a, p, n = SmartMiningBatchSampler.batch_triplets(x.shape[0])
    assert torch.equal(y[a], y[p]) and not (y[a] == y[n]).any()


def test_errors(data) -> None:
    embeddings, labels = data
    with pytest.raises(RuntimeError, match="miner.update"):
        next(iter(SmartMiningBatchSampler(SmartMiner(index="flat"), labels, triplets_per_batch=4)))
    with pytest.raises(ValueError, match="divisible by world_size"):
        SmartMiningBatchSampler(updated_miner(data), labels, triplets_per_batch=5, rank=0, world_size=2)
    with pytest.raises(ValueError, match="no sample admits a triplet"):
        SmartMiningBatchSampler(updated_miner(data), torch.zeros(62, dtype=torch.long), triplets_per_batch=4)
    with pytest.raises(ValueError, match="no full batch"):
        SmartMiningBatchSampler(updated_miner(data), labels, triplets_per_batch=61)
    with pytest.raises(ValueError, match="3 items per triplet"):
        SmartMiningBatchSampler.batch_triplets(10)
