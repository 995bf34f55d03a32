"""Class-block batch samplers with class ids that are not 0..C−1 (negative, beyond float64's integers, sparse), in
any container, sharded over DDP ranks: the batches of 0..C−1 labels, blocks of one class each."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metric.samplers import ClassRepresentativeBatchSampler, HierarchicalClassBatchSampler, PKBatchSampler
from tests.reference import samplers as ref

CODES = torch.tensor([0, 1, 2, 3, 2, 1, 0, 3, 3, 2, 0, 1, 2, 2, 3, 0, 1])
# Increasing, so the classes sort as their codes do; 2⁶² and 2⁶² + 1 are one float64.
IDS = torch.tensor([-(2**62), -7, 2**62, 2**62 + 1])
MAKERS = {
    "pk": lambda labels, **kw: PKBatchSampler(labels, 4, 3, drop_last=False, **kw),
    "class_representative": lambda labels, **kw: ClassRepresentativeBatchSampler(labels, 4, 3, **kw),
    "hierarchical": lambda labels, **kw: HierarchicalClassBatchSampler(labels, 4, 3, **kw),
}


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("container", [torch.tensor, np.array, list], ids=["tensor", "numpy", "list"])
def test_awkward_class_ids_give_the_batches_of_their_codes_on_every_rank(name: str, container) -> None:
    make = MAKERS[name]
    labels = IDS[CODES]
    for epoch in (0, 5):
        per_rank = []
        for rank in range(2):
            sampler = make(container(labels.tolist()), rank=rank, world_size=2, seed=11)
            plain = make(CODES, rank=rank, world_size=2, seed=11)
            sampler.set_epoch(epoch)
            plain.set_epoch(epoch)
            batches = list(sampler)
            assert batches == list(plain) and len(batches) == len(sampler) > 0
            per_rank.append(batches)
        for batch in ref.merge_ranks(per_rank):
            assert len(ref.class_blocks(batch, labels.tolist(), 3)) == 4  # one class per block, none twice
