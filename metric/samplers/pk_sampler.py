"""P classes × K samples per batch, every sample once per epoch where class sizes allow, DDP-sharded."""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

from metric.registry import BATCH_SAMPLERS
from metric.samplers.sharding import Block, ClassBlockBatchSampler, cyclic_take, epoch_generator


@BATCH_SAMPLERS.register("pk")
class PKBatchSampler(ClassBlockBatchSampler):
    """Yields lists of dataset indices: each global batch holds ``P`` distinct classes × ``K`` samples.

    One epoch: each class's samples are shuffled and cut into chunks of ``K``; a last partial chunk is filled
    with the class's first shuffled samples again, and a class with fewer than ``K`` samples repeats its samples
    to fill one chunk. So every sample appears at least once, and exactly once when every class size is a
    multiple of ``K`` and the chunks pack into full batches. Batches take, each time, ``P`` of the classes with
    the most chunks left (ties broken at random), which packs as many full batches as possible; the batch order
    and the class order inside a batch are then shuffled. Chunks that cannot form a full batch of distinct
    classes are dropped with ``drop_last=True``; with ``drop_last=False`` they get their own batches, topped up
    with random ``K``-sample chunks of other classes. Everything is a function of ``(seed, epoch)``.

    DDP: each rank keeps ``P / world_size`` whole class blocks of every global batch (``P`` must be divisible
    by ``world_size``), so every rank yields the same number of batches and the ranks together see each
    sample as often as one process would. Labels may be group ids (co-segmentation: ``P`` groups × ``K``
    images).
    """

    def __init__(
        self,
        labels: torch.Tensor | Sequence[int],
        classes_per_batch: int,
        samples_per_class: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(labels, classes_per_batch, samples_per_class, rank=rank, world_size=world_size, seed=seed)
        self.drop_last = drop_last
        self._num_batches = sum(1 for _ in self.global_batches(epoch_generator(self.seed, 0)))  # same every epoch

    def _chunks(self, generator: torch.Generator) -> list[list[torch.Tensor]]:
        k = self.samples_per_class
        chunks = []
        for indices in self.indices_per_class:
            shuffled = indices[torch.randperm(indices.numel(), generator=generator)]
            filled = cyclic_take(shuffled, -(-indices.numel() // k) * k)
            chunks.append(list(filled.split(k)))
        return chunks

    def _random_chunk(self, class_id: int, generator: torch.Generator) -> torch.Tensor:
        indices = self.indices_per_class[class_id]
        return cyclic_take(indices[torch.randperm(indices.numel(), generator=generator)], self.samples_per_class)

    def global_batches(self, generator: torch.Generator) -> Iterator[list[Block]]:
        p = self.classes_per_batch
        chunks = self._chunks(generator)
        left = torch.tensor([len(c) for c in chunks], dtype=torch.float64)
        batches: list[list[torch.Tensor]] = []
        while True:
            key = torch.where(left > 0, left + torch.rand(left.shape, generator=generator, dtype=torch.float64), -1.0)
            top, chosen = torch.topk(key, p)
            if top[-1] < 0:
                break
            left[chosen] -= 1
            batches.append([chunks[c].pop() for c in chosen.tolist()])
        if not self.drop_last:
            leftover = [c for c in range(len(chunks)) if chunks[c]]
            while any(chunks[c] for c in leftover):
                present = [c for c in leftover if chunks[c]]
                others = torch.tensor([c for c in range(len(chunks)) if c not in present])
                fillers = others[torch.randperm(others.numel(), generator=generator)[: p - len(present)]]
                batches.append(
                    [chunks[c].pop() for c in present] + [self._random_chunk(c, generator) for c in fillers.tolist()]
                )
        for b in torch.randperm(len(batches), generator=generator).tolist():
            blocks = batches[b]
            yield [blocks[i].tolist() for i in torch.randperm(p, generator=generator).tolist()]

    def __len__(self) -> int:
        return self._num_batches
