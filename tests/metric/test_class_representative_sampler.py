"""Class-representative batch sampler: block structure, T-iteration persistence, hard class mining, DDP."""
from __future__ import annotations

import pytest
import torch

from metric.distances import CosineSimilarity
from metric.registry import BATCH_SAMPLERS
from metric.samplers import ClassRepresentativeBatchSampler
from tests.reference import samplers as ref

LABELS = torch.arange(12).repeat_interleave(5)  # 12 classes × 5 samples


def batches_with_representatives(sampler: ClassRepresentativeBatchSampler, epoch: int = 0):
    """(batch, representatives in force when it was made) for every batch of the epoch."""
    sampler.set_epoch(epoch)
    return [(batch, sampler.representatives.clone()) for batch in sampler]


def line_embeddings(labels: torch.Tensor) -> torch.Tensor:
    """Class c sits around (10·c, 0): near classes are those with near ids."""
    return torch.stack([labels.float() * 10, torch.randn(labels.numel()) * 0.1], 1)


def test_blocks_start_with_their_class_representative():
    sampler = ClassRepresentativeBatchSampler(LABELS, 4, 3, iterations_per_representative=2, batches_per_epoch=6)
    labels = LABELS.tolist()
    for batch, representatives in batches_with_representatives(sampler):
        blocks = ref.class_blocks(batch, labels, 3)
        assert len(blocks) == 4 and len(batch) == sampler.batch_size
        for block in blocks:
            assert block[0] == int(representatives[labels[block[0]]])
            assert block[0] not in block[1:] and len(set(block[1:])) == 2
    assert torch.equal(sampler.representative_mask, torch.tensor([True, False, False] * 4))


def test_representatives_persist_for_t_iterations():
    t = 3
    sampler = ClassRepresentativeBatchSampler(LABELS, 4, 2, iterations_per_representative=t, batches_per_epoch=9)
    seen = [reps for _, reps in batches_with_representatives(sampler)]
    for period in range(3):
        first = seen[period * t]
        assert all(torch.equal(first, reps) for reps in seen[period * t : (period + 1) * t])
        assert ((LABELS[first]) == torch.arange(12)).all()
    assert not torch.equal(seen[0], seen[t]) and not torch.equal(seen[t], seen[2 * t])


def test_hard_class_mining_picks_near_classes():
    sampler = ClassRepresentativeBatchSampler(LABELS, 4, 2, batches_per_epoch=30)
    random_spans = [max(LABELS[b].tolist()) - min(LABELS[b].tolist()) for b, _ in batches_with_representatives(sampler)]
    sampler.update_embeddings(line_embeddings(LABELS))
    spans = [max(LABELS[b].tolist()) - min(LABELS[b].tolist()) for b, _ in batches_with_representatives(sampler, 1)]
    assert all(span == 3 for span in spans)  # a class and its 3 nearest: 4 consecutive ids
    assert sum(span > 3 for span in random_spans) > 20


def test_representative_embeddings_steer_classes_and_survive_new_representatives():
    sampler = ClassRepresentativeBatchSampler(LABELS, 3, 2, iterations_per_representative=2, batches_per_epoch=8,
                                              distance=CosineSimilarity())
    iterator = iter(sampler)
    next(iterator)
    angles = torch.arange(12).float() * 0.2
    sampler.set_representative_embeddings(torch.stack([angles.cos(), angles.sin()], 1))
    for batch in iterator:
        classes = sorted(set(LABELS[batch].tolist()))
        assert classes[-1] - classes[0] == 2


def test_small_classes_fill_their_blocks():
    labels = torch.tensor([0, 1, 1, 2, 2, 2, 2, 2])
    sampler = ClassRepresentativeBatchSampler(labels, 3, 4, batches_per_epoch=3)
    for batch, representatives in batches_with_representatives(sampler):
        blocks = ref.class_blocks(batch, labels.tolist(), 4)
        assert [0, 0, 0, 0] in blocks
        block1 = next(b for b in blocks if labels[b[0]] == 1)
        assert block1[1:] == [3 - block1[0]] * 3  # the other sample of class 1, repeated


def test_deterministic_per_seed_and_epoch():
    def run(seed, epoch):
        return [b for b, _ in batches_with_representatives(
            ClassRepresentativeBatchSampler(LABELS, 4, 2, seed=seed), epoch)]

    assert run(0, 0) == run(0, 0) and run(0, 1) == run(0, 1)
    assert run(0, 0) != run(0, 1) and run(0, 0) != run(1, 0)


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("mined", [False, True])
def test_ddp_ranks_together_equal_one_process(world_size, mined):
    embeddings = line_embeddings(LABELS)

    def make(rank, size):
        sampler = ClassRepresentativeBatchSampler(LABELS, 6, 2, iterations_per_representative=2, rank=rank,
                                                  world_size=size, seed=7, batches_per_epoch=5)
        if mined:
            sampler.update_embeddings(embeddings)
        return sampler

    single = make(0, 1)
    ranks = [make(r, world_size) for r in range(world_size)]
    for epoch in (0, 1):
        made = [batches_with_representatives(s, epoch) for s in ranks]
        per_rank = [[b for b, _ in batches] for batches in made]
        assert ref.merge_ranks(per_rank) == [b for b, _ in batches_with_representatives(single, epoch)]
        for sampler, batches in zip(ranks, made):
            assert len(batches) == len(sampler) == 5
            for batch, representatives in batches:
                marked = torch.tensor(batch)[sampler.representative_mask]
                assert torch.equal(marked, representatives[LABELS[marked]])


def test_registered_and_rejects_bad_settings():
    sampler = BATCH_SAMPLERS.create("class_representative", labels=LABELS, classes_per_batch=4, samples_per_class=3)
    assert len(sampler) == 60 // 12
    with pytest.raises(ValueError, match=r"divisible by world_size"):
        ClassRepresentativeBatchSampler(LABELS, 4, 2, world_size=3)
    with pytest.raises(ValueError, match="iterations_per_representative"):
        ClassRepresentativeBatchSampler(LABELS, 4, 2, iterations_per_representative=0)
    with pytest.raises(ValueError, match="batches_per_epoch"):
        ClassRepresentativeBatchSampler(LABELS, 4, 2, batches_per_epoch=0)
    with pytest.raises(ValueError, match="one row per sample"):
        sampler.update_embeddings(torch.randn(59, 2))
    with pytest.raises(ValueError, match="one row per class"):
        sampler.set_representative_embeddings(torch.randn(11, 2))
    with pytest.raises(ValueError, match="NaN"):
        sampler.update_embeddings(torch.full((60, 2), float("nan")))


def test_integer_embeddings_are_refused_when_supplied():
    """They were taken, and iterating failed later, inside the DataLoader, with 'x must be a floating-point tensor'."""
    sampler = ClassRepresentativeBatchSampler(LABELS, 4, 2)
    with pytest.raises(TypeError, match="embeddings must be a floating-point tensor, got torch.int64"):
        sampler.update_embeddings(torch.randint(0, 5, (60, 2)))
    with pytest.raises(TypeError, match="embeddings must be a floating-point tensor, got torch.int64"):
        sampler.set_representative_embeddings(torch.randint(0, 5, (12, 2)))
    sampler.update_embeddings(line_embeddings(LABELS).to(torch.bfloat16))  # 16-bit floats are fine
    assert len(list(sampler)) == len(sampler)
