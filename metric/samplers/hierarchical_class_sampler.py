"""Anchor-neighbour class sampling from a class tree (Ge et al., ECCV 2018, hierarchical triplet loss)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import torch

from metric._checks import is_integer
from metric.registry import BATCH_SAMPLERS
from metric.samplers.sharding import Block, ClassBlockBatchSampler, cyclic_take

if TYPE_CHECKING:  # metric.class_tree imports metric.samplers: no import cycle at run time
    from metric.class_tree import ClassTree


@BATCH_SAMPLERS.register("hierarchical")
class HierarchicalClassBatchSampler(ClassBlockBatchSampler):
    """Yields lists of dataset indices: each global batch holds ``P`` distinct classes × ``M`` samples.

    The classes come in groups: a random anchor class (not yet in the batch) followed by its
    ``classes_per_anchor − 1`` nearest classes in the tree (:meth:`ClassTree.nearest_classes`, skipping
    classes already in the batch), until ``P`` classes; groups stay next to each other in the batch. Each
    class contributes ``M`` of its samples drawn without replacement (repeated to fill when it has fewer).
    Until a tree is set (constructor or :meth:`set_tree`, e.g. after ``HierarchicalTripletLoss.update_tree``
    each epoch), classes are drawn at random. Batches are made lazily, so a tree set during an epoch steers
    the following batches. The epoch has ``batches_per_epoch`` batches (default ``N // (P·M)``, at least 1);
    everything is a function of ``(seed, epoch)`` and the tree.

    DDP: each rank keeps ``P / world_size`` whole class blocks of every global batch (``P`` divisible by
    ``world_size``), so every rank yields the same number of batches and the ranks together see each sample
    as often as one process would. All ranks must set the same tree at the same point.
    """

    def __init__(
        self,
        labels: torch.Tensor | Sequence[int],
        classes_per_batch: int,
        samples_per_class: int,
        classes_per_anchor: int = 2,
        tree: Optional[ClassTree] = None,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        batches_per_epoch: Optional[int] = None,
    ) -> None:
        super().__init__(labels, classes_per_batch, samples_per_class, rank=rank, world_size=world_size, seed=seed)
        if not is_integer(classes_per_anchor) or not 1 <= classes_per_anchor <= len(self.classes):
            raise ValueError(
                f"classes_per_anchor must be in [1, {len(self.classes)}] (classes in labels), got {classes_per_anchor}"
            )
        self.classes_per_anchor = int(classes_per_anchor)
        self.batches_per_epoch = self.epoch_length(batches_per_epoch)
        self.tree: Optional[ClassTree] = None
        if tree is not None:
            self.set_tree(tree)

    def set_tree(self, tree: ClassTree) -> None:
        """Use ``tree`` (over exactly the classes of ``labels``) for the following batches."""
        if not torch.equal(tree.classes.cpu(), self.classes):
            raise ValueError(
                f"the tree's classes must be the sampler's {len(self.classes)} classes, got {tree.num_classes} "
                "classes that differ: build the tree from the embeddings of the same data set"
            )
        self.tree = tree

    def _neighbours(self, anchor: int) -> torch.Tensor:
        """Class positions (not labels) ordered from nearest to farthest in the tree."""
        nearest = self.tree.nearest_classes(int(self.classes[anchor]), len(self.classes) - 1)
        return torch.searchsorted(self.classes, nearest.cpu())

    def _choose_classes(self, generator: torch.Generator) -> list[int]:
        order = torch.randperm(len(self.classes), generator=generator).tolist()
        if self.tree is None:
            return order[: self.classes_per_batch]
        chosen: list[int] = []
        taken = torch.zeros(len(self.classes), dtype=torch.bool)
        for anchor in order:
            if len(chosen) == self.classes_per_batch:
                break
            if taken[anchor]:
                continue
            neighbours = self._neighbours(anchor)
            neighbours = neighbours[~taken[neighbours]][: self.classes_per_anchor - 1]
            group = [anchor] + neighbours.tolist()
            group = group[: self.classes_per_batch - len(chosen)]
            chosen += group
            taken[group] = True
        return chosen

    def _block(self, class_id: int, generator: torch.Generator) -> Block:
        indices = self.indices_per_class[class_id]
        shuffled = indices[torch.randperm(indices.numel(), generator=generator)]
        return cyclic_take(shuffled, self.samples_per_class).tolist()

    def global_batches(self, generator: torch.Generator) -> Iterator[list[Block]]:
        for _ in range(self.batches_per_epoch):
            yield [self._block(c, generator) for c in self._choose_classes(generator)]

    def __len__(self) -> int:
        return self.batches_per_epoch
