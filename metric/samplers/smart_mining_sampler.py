"""Training batches of triplets mined over the whole training set by a :class:`SmartMiner`, DDP-sharded."""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

from metric._checks import check_count
from metric.miners.base_miner import TripletIndices
from metric.miners.smart_miner import SmartMiner
from metric.registry import BATCH_SAMPLERS
from metric.samplers.sharding import (
    Block,
    ShardedBatchSampler,
    check_blocks_divisible,
    class_indices,
    cyclic_take,
    epoch_generator,
    shard_blocks,
)


@BATCH_SAMPLERS.register("smart_mining")
class SmartMiningBatchSampler(ShardedBatchSampler):
    """Yields lists of dataset indices laid out as ``[a_1..a_T, p_1..p_T, n_1..n_T]``, one mined triplet per anchor.

    Anchors: every sample that admits a triplet (its class has another sample and there are ≥ 2 classes),
    shuffled per ``(seed, epoch)`` and cut into global batches of ``triplets_per_batch`` anchors; with
    ``drop_last=False`` the last partial batch is topped up with the epoch's first anchors.

    Mining is lazy: each batch's anchors are mined by ``miner`` when the batch is drawn, so the controller's
    current offset applies: draw each batch after the step before it (DataLoader workers draw batches ahead, each
under an offset as many steps old as the batches in flight; the retrieval trainer reads this sampler's batches
without workers). Refresh the miner's index with
    ``miner.update(all_embeddings, labels)`` between epochs; its labels must be ``labels``.

    DDP: every rank draws the same global batch of anchors and keeps its contiguous share (the shared
    :func:`shard_blocks` rule, one block per anchor), then mines only those, so ``triplets_per_batch`` must be
    divisible by ``world_size`` and every rank yields the same number of batches of ``3 · triplets_per_batch /
    world_size`` indices. Give every rank's miner the same embeddings (all-gathered). Fallback draws of the miner
    come from a per-(seed, epoch, rank) stream.

    Feed the loss batch-local triplets with :meth:`batch_triplets` ``(len(batch))``. A sample may occur more
    than once in a batch (e.g. the positive of one anchor and the negative of another); each occurrence is a
    separate item.
    """

    def __init__(
        self,
        miner: SmartMiner,
        labels: torch.Tensor | Sequence[int],
        triplets_per_batch: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        super().__init__(rank=rank, world_size=world_size, seed=seed)
        classes, per_class = class_indices(labels)
        check_count(triplets_per_batch, 1, "triplets_per_batch")
        triplets_per_batch = int(triplets_per_batch)
        check_blocks_divisible(triplets_per_batch, world_size, "triplets_per_batch")
        usable = [indices for indices in per_class if indices.numel() >= 2] if len(classes) >= 2 else []
        if not usable:
            raise ValueError("no sample admits a triplet: labels need >= 2 classes and a class with >= 2 samples")
        self.anchors = torch.sort(torch.cat(usable)).values
        if drop_last and self.anchors.numel() < triplets_per_batch:
            raise ValueError(
                f"triplets_per_batch ({triplets_per_batch}) exceeds the {self.anchors.numel()} samples that admit a "
                f"triplet: no full batch"
            )
        self.miner = miner
        self.num_samples = sum(indices.numel() for indices in per_class)
        self.triplets_per_batch = triplets_per_batch
        self.drop_last = drop_last

    @property
    def batch_size(self) -> int:
        """Number of indices in each batch this rank yields."""
        return 3 * self.triplets_per_batch // self.world_size

    @staticmethod
    def batch_triplets(batch_length: int) -> TripletIndices:
        """Positions of the triplets inside a yielded batch of ``batch_length`` (= 3T) items."""
        if batch_length % 3:
            raise ValueError(f"a smart-mining batch holds 3 items per triplet, got a batch of {batch_length}")
        t = torch.arange(batch_length // 3)
        return TripletIndices(t, t + t.numel(), t + 2 * t.numel())

    def global_batches(self, generator: torch.Generator) -> Iterator[list[Block]]:
        """Global batches of anchors, one block ``[anchor]`` each, identical on every rank. The epoch's anchor
        order is drawn from ``generator`` on the call, before the first batch is taken."""
        order = self.anchors[torch.randperm(self.anchors.numel(), generator=generator)]
        g = self.triplets_per_batch
        if not self.drop_last:  # top up the last batch, cycling when there are fewer anchors than it lacks
            order = cyclic_take(order, -(-order.numel() // g) * g)
        return ([[a] for a in order[start : start + g].tolist()] for start in range(0, order.numel() - g + 1, g))

    def __iter__(self) -> Iterator[list[int]]:
        if self.miner.num_samples != self.num_samples:
            raise RuntimeError(
                f"the miner indexes {self.miner.num_samples} samples but the sampler has {self.num_samples} labels: "
                f"call miner.update(embeddings of the whole training set, labels) before iterating"
            )
        generator = epoch_generator(self.seed, self.epoch)
        batches = self.global_batches(generator)
        # Then fork a per-rank stream for the miner's fallback draws.
        rank_seeds = torch.randint(2**62, (self.world_size,), generator=generator)
        mining = torch.Generator().manual_seed(int(rank_seeds[self.rank]))
        for blocks in batches:
            anchors = shard_blocks(blocks, self.rank, self.world_size)
            triplets = self.miner.mine(torch.tensor(anchors), generator=mining)
            if len(triplets) != len(anchors):
                raise RuntimeError(
                    "the miner skipped anchors that admit a triplet: its labels differ from the sampler's")
            yield torch.cat([triplets.anchor, triplets.positive, triplets.negative]).tolist()

    def __len__(self) -> int:
        full, partial = divmod(self.anchors.numel(), self.triplets_per_batch)
        return full + int(partial > 0 and not self.drop_last)
