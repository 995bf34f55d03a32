"""Naive references for the batch samplers' invariants and the representative proximity loss: plain loops."""
from __future__ import annotations

from collections import Counter

import torch

from tests.reference import triplet as ref


def class_blocks(batch: list[int], labels: list[int], block_size: int) -> list[list[int]]:
    """Cut ``batch`` into consecutive blocks of ``block_size``; raise ``AssertionError`` unless each block holds
    one class and no class has two blocks."""
    assert len(batch) % block_size == 0, f"batch of {len(batch)} is not made of blocks of {block_size}"
    blocks = [batch[i : i + block_size] for i in range(0, len(batch), block_size)]
    seen = []
    for block in blocks:
        classes = {labels[i] for i in block}
        assert len(classes) == 1, f"block {block} mixes classes {classes}"
        assert labels[block[0]] not in seen, f"class {labels[block[0]]} has two blocks in {batch}"
        seen.append(labels[block[0]])
    return blocks


def merge_ranks(per_rank: list[list[list[int]]]) -> list[list[int]]:
    """Batch i of the whole job: batch i of rank 0, then of rank 1, ... (all ranks must have as many)."""
    assert len({len(batches) for batches in per_rank}) == 1, "ranks yield different numbers of batches"
    return [sum((batches[i] for batches in per_rank), []) for i in range(len(per_rank[0]))]


def usage(batches: list[list[int]]) -> Counter:
    """How often each dataset index appears over the batches."""
    counts: Counter = Counter()
    for batch in batches:
        for index in batch:
            counts[index] += 1
    return counts


def proximity_losses(emb: torch.Tensor, labels: list[int], is_representative: list[bool], kind: str) -> torch.Tensor:
    """For each non-representative sample whose class has a representative: d(sample, representative), or
    minus the similarity for similarities."""
    rows = emb.tolist()
    sign = -1.0 if kind in ref.SIMILARITIES else 1.0
    out = []
    for i in range(len(rows)):
        if is_representative[i]:
            continue
        for j in range(len(rows)):
            if is_representative[j] and labels[j] == labels[i]:
                out.append(sign * ref.distance(rows[i], rows[j], kind))
    return torch.tensor(out, dtype=torch.float64)
