"""Shared plumbing of the class-block batch samplers: per-class index lists, per-(seed, epoch) randomness and
the DDP split of one global batch across ranks.

Every rank builds the same global batches (same seed, same epoch) and keeps its share of each: the batch is a
list of class blocks and each rank takes a contiguous run of whole blocks. So all ranks see the same number of
batches, no class block is cut between ranks, and the union of the ranks' batches is exactly the batch one
process would see. A subclass of :class:`ShardedBatchSampler` writes ``global_batches`` and ``__len__``.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import torch
from torch.utils.data import Sampler

from metric._checks import as_class_ids, check_count, check_shape, is_integer, whole_number

Block = list[int]  # dataset indices of one class inside a batch


def check_rank(rank: int, world_size: int) -> None:
    """Raise ``ValueError`` unless ``rank`` and ``world_size`` are integers with ``0 <= rank < world_size``."""
    check_count(world_size, 1, "world_size")
    if not is_integer(rank) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")


def check_blocks_divisible(blocks_per_batch: int, world_size: int, what: str = "classes_per_batch") -> None:
    """Raise ``ValueError`` unless a batch of ``blocks_per_batch`` class blocks splits evenly over the ranks."""
    if blocks_per_batch % world_size != 0:
        raise ValueError(
            f"{what} ({blocks_per_batch}) must be divisible by world_size ({world_size}): each rank takes whole "
            f"class blocks of every global batch"
        )


def shard_blocks(blocks: Sequence[Sequence[int]], rank: int, world_size: int) -> list[int]:
    """The share of one global batch (a list of class blocks) that ``rank`` keeps, flattened.

    Rank ``r`` keeps blocks ``[r·n/world_size, (r+1)·n/world_size)``; ``n`` must be divisible by ``world_size``.
    """
    check_rank(rank, world_size)
    check_blocks_divisible(len(blocks), world_size, "the number of class blocks in a batch")
    per_rank = len(blocks) // world_size
    return [int(i) for block in blocks[rank * per_rank : (rank + 1) * per_rank] for i in block]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator whose stream depends only on ``(seed, epoch)``, identical on every rank. Any integer seed
    works (e.g. a 64-bit ``torch.initial_seed()``): the mix is taken modulo 2⁶⁴, the generator's seed range, which
    leaves the streams of small and negative seeds as they were."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**64)


def class_indices(labels: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``labels (N,)`` → sorted distinct classes ``(C,)`` and, per class, its dataset indices (ascending)."""
    labels = as_class_ids(labels)
    check_shape(labels, ["N"], "labels")
    if labels.numel() == 0:  # checked first: torch.as_tensor([]) is a float tensor
        raise ValueError("labels is empty: a batch sampler needs at least one sample")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    labels = labels.cpu()
    order = torch.argsort(labels, stable=True)
    classes, counts = torch.unique_consecutive(labels[order], return_counts=True)
    return classes, list(torch.split(order, counts.tolist()))


def cyclic_take(indices: torch.Tensor, count: int) -> torch.Tensor:
    """The first ``count`` entries of ``indices (n,)`` (n ≥ 1) repeated end to end: fills a class block from a
    class with fewer samples than the block needs."""
    return indices.repeat(-(-count // indices.numel()))[:count]


class ShardedBatchSampler(Sampler[list[int]]):
    """Base of the batch samplers that build global batches of class blocks and shard them over DDP ranks.

    Subclasses write ``global_batches(generator) -> Iterator[list[Block]]`` (the same on every rank, drawing
    randomness only from ``generator``) and ``__len__`` (number of batches per epoch, the same on every rank).
    """

    def __init__(self, rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        check_rank(rank, world_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.seed = whole_number("seed", seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next ``iter()`` yields (call it before each epoch, as with
        ``DistributedSampler``)."""
        self.epoch = whole_number("epoch", epoch)

    def global_batches(self, generator: torch.Generator) -> Iterator[list[Block]]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        for blocks in self.global_batches(epoch_generator(self.seed, self.epoch)):
            yield shard_blocks(blocks, self.rank, self.world_size)

    def __len__(self) -> int:
        raise NotImplementedError


class ClassBlockBatchSampler(ShardedBatchSampler):
    """A :class:`ShardedBatchSampler` whose global batches are ``classes_per_batch`` (P) blocks of
    ``samples_per_class`` (K) indices of one class each: checks P and K and indexes the classes of ``labels``."""

    def __init__(
        self,
        labels: torch.Tensor | Sequence[int],
        classes_per_batch: int,
        samples_per_class: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(rank=rank, world_size=world_size, seed=seed)
        self.classes, self.indices_per_class = class_indices(labels)
        self.num_samples = sum(indices.numel() for indices in self.indices_per_class)
        check_count(classes_per_batch, 1, "classes_per_batch")
        check_count(samples_per_class, 1, "samples_per_class")
        if classes_per_batch > len(self.classes):
            raise ValueError(
                f"classes_per_batch ({classes_per_batch}) exceeds the number of classes in labels ({len(self.classes)})"
            )
        check_blocks_divisible(classes_per_batch, world_size)
        self.classes_per_batch = int(classes_per_batch)
        self.samples_per_class = int(samples_per_class)

    @property
    def batch_size(self) -> int:
        """Number of indices in each batch this rank yields."""
        return self.classes_per_batch * self.samples_per_class // self.world_size

    def epoch_length(self, batches_per_epoch: Optional[int]) -> int:
        """``batches_per_epoch``, or by default ``N // (P·K)`` (at least 1), for samplers that draw with
        replacement across batches; raises ``ValueError`` if it is < 1."""
        if batches_per_epoch is None:
            return max(1, self.num_samples // (self.classes_per_batch * self.samples_per_class))
        check_count(batches_per_epoch, 1, "batches_per_epoch")
        return int(batches_per_epoch)
