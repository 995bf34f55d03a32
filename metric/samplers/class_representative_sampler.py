"""Batches built around class representatives kept for T iterations, with hard class mining (Can, Gürbüz,
Alatan, ICIP 2021: deep metric learning with alternating projections onto feasible sets)."""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch

from metric._checks import check_count, check_finite, check_floating, check_shape
from metric.distances.base_distance import BaseDistance
from metric.distances.euclidean import EuclideanDistance
from metric.registry import BATCH_SAMPLERS
from metric.samplers.sharding import Block, ClassBlockBatchSampler, cyclic_take


@BATCH_SAMPLERS.register("class_representative")
class ClassRepresentativeBatchSampler(ClassBlockBatchSampler):
    """Yields lists of dataset indices: each global batch holds ``P`` classes, each as a block of ``K`` indices
    whose first is the class's representative and the rest other samples of the class.

    Every ``iterations_per_representative`` (T) batches, and at the start of each epoch, one representative per
    class is drawn at random; the batches of that period all use these representatives. A batch's other
    samples are drawn uniformly without replacement from the class's non-representatives (repeated to fill
    when the class is smaller than ``K``; a one-sample class repeats its representative).

    Class choice: at random, until embeddings are supplied with :meth:`update_embeddings` (the whole data set,
    (N, D)) or :meth:`set_representative_embeddings` (the current :attr:`representatives`, (C, D)); from then
    on each batch takes a random class and its ``P − 1`` nearest classes by representative embedding under
    ``distance`` (hard class mining). Batches are made lazily, so embeddings supplied during an epoch steer the
    following batches (a ``DataLoader`` asks for a few batches ahead). The epoch has ``batches_per_epoch``
    batches (default ``N // (P·K)``, at least 1); everything is a function of ``(seed, epoch)`` and of the
    embeddings supplied.

    DDP: each rank keeps ``P / world_size`` whole blocks of every global batch, so :attr:`representative_mask`
    marks the same positions on every rank. All ranks must supply the same embeddings at the same iteration.
    """

    def __init__(
        self,
        labels: torch.Tensor | Sequence[int],
        classes_per_batch: int,
        samples_per_class: int,
        iterations_per_representative: int = 10,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        batches_per_epoch: Optional[int] = None,
        distance: Optional[BaseDistance] = None,
    ) -> None:
        super().__init__(labels, classes_per_batch, samples_per_class, rank=rank, world_size=world_size, seed=seed)
        check_count(iterations_per_representative, 1, "iterations_per_representative")
        self.iterations_per_representative = int(iterations_per_representative)
        self.batches_per_epoch = self.epoch_length(batches_per_epoch)
        self.distance = EuclideanDistance() if distance is None else distance
        self.representatives: Optional[torch.Tensor] = None  # (C,) dataset indices, set when a period starts
        self._dataset_embeddings: Optional[torch.Tensor] = None
        self._class_embeddings: Optional[torch.Tensor] = None

    @property
    def representative_mask(self) -> torch.Tensor:
        """(batch_size,) bool: True at the positions of this rank's batches that hold a representative (the
        first of every block of ``K``)."""
        mask = torch.zeros(self.batch_size, dtype=torch.bool)
        mask[:: self.samples_per_class] = True
        return mask

    def update_embeddings(self, embeddings: torch.Tensor) -> None:
        """Supply current embeddings of the whole data set, ``(N, D)`` in dataset order; each new period reads
        its representatives' rows."""
        n = check_shape(embeddings, ["N", "D"], "embeddings")["N"]
        if n != self.num_samples:
            raise ValueError(f"embeddings must have one row per sample ({self.num_samples}), got {n}")
        check_floating(embeddings, "embeddings")
        check_finite(embeddings, "embeddings")
        self._dataset_embeddings = embeddings.detach()
        if self.representatives is not None:
            self._class_embeddings = self._dataset_embeddings[self.representatives.to(embeddings.device)]

    def set_representative_embeddings(self, embeddings: torch.Tensor) -> None:
        """Supply embeddings of the current :attr:`representatives`, ``(C, D)`` in the order of ``classes``; they
        stand for their classes until the next call (also after the representatives change)."""
        c = check_shape(embeddings, ["C", "D"], "embeddings")["C"]
        if c != len(self.classes):
            raise ValueError(f"embeddings must have one row per class ({len(self.classes)}), got {c}")
        check_floating(embeddings, "embeddings")
        check_finite(embeddings, "embeddings")
        self._dataset_embeddings = None
        self._class_embeddings = embeddings.detach()

    def _draw_representatives(self, generator: torch.Generator) -> torch.Tensor:
        sizes = torch.tensor([indices.numel() for indices in self.indices_per_class])
        picks = (torch.rand(len(sizes), generator=generator) * sizes).long().clamp(max=sizes - 1)
        return torch.stack([indices[p] for indices, p in zip(self.indices_per_class, picks)])

    def _choose_classes(self, generator: torch.Generator) -> torch.Tensor:
        count = len(self.classes)
        if self._class_embeddings is None:
            return torch.randperm(count, generator=generator)[: self.classes_per_batch]
        seed_class = int(torch.randint(count, (1,), generator=generator))
        values = self.distance.pairwise(self._class_embeddings[seed_class : seed_class + 1], self._class_embeddings)[0]
        far = self.distance.farness(values)
        far[seed_class] = -float("inf")
        return torch.topk(far, self.classes_per_batch, largest=False).indices.cpu()

    def _block(self, class_id: int, generator: torch.Generator) -> Block:
        representative = self.representatives[class_id]
        indices = self.indices_per_class[class_id]
        others = indices[indices != representative]
        if others.numel() == 0:
            others = representative.view(1)
        drawn = cyclic_take(others[torch.randperm(others.numel(), generator=generator)], self.samples_per_class - 1)
        return [int(representative)] + drawn.tolist()

    def global_batches(self, generator: torch.Generator) -> Iterator[list[Block]]:
        for step in range(self.batches_per_epoch):
            if step % self.iterations_per_representative == 0:
                self.representatives = self._draw_representatives(generator)
                if self._dataset_embeddings is not None:
                    device = self._dataset_embeddings.device
                    self._class_embeddings = self._dataset_embeddings[self.representatives.to(device)]
            yield [self._block(c, generator) for c in self._choose_classes(generator).tolist()]

    def __len__(self) -> int:
        return self.batches_per_epoch
