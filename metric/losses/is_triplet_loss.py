"""IS-Triplet (Li & Liu 2021): a triplet margin loss between sampled pixels of per-pixel embeddings, within
each image or, for co-segmentation, within each group of images."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from metric._checks import (check_embedding_size, check_finite, check_finite_number, check_floating, check_same_device,
                            check_shape)
from metric.distances.base_distance import BaseDistance
from metric.distances.euclidean import EuclideanDistance
from metric.losses.triplet_margin_loss import counted_triplet_margin_loss, counts_suffice, triplet_margin_loss
from metric.miners.base_miner import BaseTripletMiner, TripletIndices
from metric.miners.batch_hard import BatchHardMiner
from metric.miners.margin_miner import MarginMiner
from metric.miners.pixel_sampler import Strategy, check_sampling, sample_pixels
from metric.reduction import Reduction, check_reduction, reduce_loss, reduce_positive_sum
from metric.registry import LOSSES


def _check_inputs(embeddings: torch.Tensor, labels: torch.Tensor, groups: Optional[torch.Tensor]) -> None:
    sizes = check_shape(embeddings, ["B", "D", "H", "W"], "embeddings")
    check_shape(labels, ["B", "H", "W"], "labels")
    expected = (sizes["B"], sizes["H"], sizes["W"])
    if tuple(labels.shape) != expected:
        raise ValueError(
            f"labels {tuple(labels.shape)} must be (B, H, W) = {expected} like embeddings {tuple(embeddings.shape)}; "
            f"resize the labels (nearest) or the embeddings first"
        )
    check_embedding_size(embeddings)
    check_floating(embeddings, "embeddings")
    check_same_device(embeddings, labels, "embeddings", "labels")
    # A sum is ~20× cheaper than an elementwise test on a full pixel-embedding map and is finite unless an
    # entry is NaN/Inf (or the sum overflows, which check_finite then clears).
    if not bool(torch.isfinite(embeddings.detach().sum())):
        check_finite(embeddings, "embeddings")
    if groups is not None:
        check_shape(groups, [str(sizes["B"])], "groups (one group id per image)")
        if groups.is_floating_point():
            raise TypeError("groups must be an integer tensor of group ids")


def _pool_members(pools: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Indices of each pool's members (pools in ascending id order)."""
    order = torch.argsort(pools, stable=True)
    counts = torch.unique_consecutive(pools[order], return_counts=True)[1]
    return torch.split(order, counts.tolist())


def pixel_triplets(
    embeddings: torch.Tensor, labels: torch.Tensor, pools: torch.Tensor, miner: BaseTripletMiner
) -> TripletIndices:
    """Triplets among sampled pixels ``embeddings (S, D)``, ``labels (S,)``: ``miner`` runs separately on each
    pool (``pools (S,)``, an image or group id), so anchor, positive and negative always share a pool.
    Memory is the miner's on one pool (O(pool size²) for batch-hard), never S×S."""
    found = []
    for members in _pool_members(pools):
        triplets = miner(embeddings[members], labels[members])
        found.append([members[t] for t in triplets])
    if not found:
        return TripletIndices.empty(embeddings.device)
    return TripletIndices(*(torch.cat(parts) for parts in zip(*found)))


def counted_pixel_triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, pools: torch.Tensor, miner: MarginMiner, margin: float,
    distance: BaseDistance,
) -> tuple[torch.Tensor, int]:
    """``(Σ loss, T)`` over the triplets :func:`pixel_triplets` would give, pool by pool
    (:func:`~metric.losses.triplet_margin_loss.counted_triplet_margin_loss`), without listing them."""
    # a zero on the graph when no pool has a triplet (summing no row: all of them could overflow float16, and inf·0)
    total, count = embeddings[:0].sum(), 0
    for members in _pool_members(pools):
        pool_total, pool_count = counted_triplet_margin_loss(embeddings[members], labels[members], miner, margin,
                                                             distance)
        total, count = total + pool_total, count + pool_count
    return total, count


def is_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    k_per_class: int = 64,
    groups: Optional[torch.Tensor] = None,
    distance: Optional[BaseDistance] = None,
    strategy: Strategy = "hard",
    probabilities: Optional[torch.Tensor] = None,
    ignore_index: int = 255,
    miner: Optional[BaseTripletMiner] = None,
    random_share: float = 0.5,
    boundary_width: int = 2,
    generator: Optional[torch.Generator] = None,
    reduction: Reduction = "none",
) -> torch.Tensor:
    """Per-triplet losses (T,) of pixel embeddings ``(B, D, H, W)`` with class ids ``labels (B, H, W)``, or with
    ``reduction`` their mean / sum / mean over the non-zero ones.

    1. :func:`~metric.miners.pixel_sampler.sample_pixels` draws ``k_per_class`` pixels per class per image
       (``strategy``, ``probabilities``, ``random_share``, ``boundary_width``, ``ignore_index``, ``generator``
       as there); only their embeddings are gathered.
    2. Triplets are formed among the sampled pixels of one image, or, with ``groups (B,)`` (a group id per
       image), among those of all images of a group: a positive is any sampled pixel of the anchor's class in
       the group, a negative any of another class in the group. ``miner`` picks them (no gradient):
       default :class:`BatchHardMiner` (per anchor, hardest positive and hardest negative; memory O(n²) for
       the n samples of an image/group); a ``SemiHardMiner(margin)`` keeps every semi-hard triplet instead
       (O(n³) candidates: keep ``k_per_class`` small then).
    3. :func:`triplet_margin_loss` with ``margin`` and ``distance`` (default Euclidean) on those triplets. A reduced
       loss whose miner only keeps triplets of positive loss (semi-hard, or batch-all with a margin ≤ ``margin``,
       same distance: :func:`counts_suffice`) is summed from the miner's pair counts instead
       (:func:`counted_pixel_triplet_loss`: the same value and gradient without listing the T triplets; its triplets all
       have a non-zero loss, so ``mean_nonzero`` equals ``mean`` there).

    Labels must have the embeddings' H×W: the caller resizes. Without any valid triplet (e.g. every image
    has one class) the result is empty and reduces to a 0 that still back-propagates.
    """
    check_reduction(reduction)
    check_finite_number(margin, "margin")
    _check_inputs(embeddings, labels, groups)
    distance = EuclideanDistance() if distance is None else distance
    miner = BatchHardMiner(distance=distance) if miner is None else miner
    sample = sample_pixels(
        labels, k_per_class, strategy, probabilities, random_share, boundary_width, ignore_index, generator
    )
    b, d, h, w = embeddings.shape
    pixel = sample.index - sample.image * (h * w)
    sampled = embeddings.reshape(b, d, h * w)[sample.image, :, pixel]  # (S, D)
    pools = sample.image if groups is None else groups.to(sample.image.device)[sample.image]
    if reduction != "none" and counts_suffice(miner, margin, distance):
        total, count = counted_pixel_triplet_loss(
            sampled, sample.label, pools, miner, margin, distance)  # type: ignore[arg-type]
        return reduce_positive_sum(total, count, reduction)
    triplets = pixel_triplets(sampled, sample.label, pools, miner)
    return reduce_loss(triplet_margin_loss(sampled, triplets, margin, distance), reduction)


@LOSSES.register("is_triplet")
class ISTripletLoss(nn.Module):
    """``forward(embeddings (B, D, H, W), labels (B, H, W), groups=None, probabilities=None) → loss``:
    :func:`is_triplet_loss` with this configuration, reduced by ``reduction``; sampling uses the global RNG."""

    def __init__(
        self,
        margin: float = 0.2,
        k_per_class: int = 64,
        distance: Optional[BaseDistance] = None,
        strategy: Strategy = "hard",
        ignore_index: int = 255,
        miner: Optional[BaseTripletMiner] = None,
        random_share: float = 0.5,
        boundary_width: int = 2,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_sampling(k_per_class, strategy, random_share, boundary_width)
        check_reduction(reduction)
        check_finite_number(margin, "margin")
        self.margin = margin
        self.k_per_class = k_per_class
        self.distance = EuclideanDistance() if distance is None else distance
        self.strategy = strategy
        self.ignore_index = ignore_index
        self.miner = BatchHardMiner(distance=self.distance) if miner is None else miner
        self.random_share = random_share
        self.boundary_width = boundary_width
        self.reduction = reduction

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        groups: Optional[torch.Tensor] = None,
        probabilities: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        return is_triplet_loss(
            embeddings,
            labels,
            margin=self.margin,
            k_per_class=self.k_per_class,
            groups=groups,
            distance=self.distance,
            strategy=self.strategy,
            probabilities=probabilities,
            ignore_index=self.ignore_index,
            miner=self.miner,
            random_share=self.random_share,
            boundary_width=self.boundary_width,
            reduction=self.reduction,
        )
