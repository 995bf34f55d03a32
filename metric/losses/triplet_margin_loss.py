"""Triplet margin loss (FaceNet) on given or mined triplets, with optional per-class-pair margins (ATL)."""
from __future__ import annotations

from typing import Optional

import torch

from metric._checks import check_class_ids, check_finite, check_finite_number, check_shape
from metric.distances.base_distance import BaseDistance, at_least_float32
from metric.distances.euclidean import EuclideanDistance
from metric.losses.base_loss import BaseMetricLoss
from metric.miners.base_miner import BaseTripletMiner, TripletIndices, check_triplet_indices
from metric.miners.batch_all import BatchAllMiner
from metric.miners.margin_miner import MarginMiner
from metric.reduction import Reduction, reduce_loss, reduce_positive_sum
from metric.registry import LOSSES


def _triplet_margins(
    labels: Optional[torch.Tensor], triplets: TripletIndices, class_margins: torch.Tensor
) -> torch.Tensor:
    c = check_shape(class_margins, ["C", "C"], "class_margins")["C"]
    check_finite(class_margins, "class_margins")
    if labels is None:
        raise ValueError("class_margins needs labels: the margin of a triplet is class_margins[label_a, label_n]")
    labels = check_class_ids(labels, c, f"they index class_margins of shape ({c}, {c})")
    return class_margins[labels[triplets.anchor], labels[triplets.negative]]


# Largest N²·D for which the distances of all N² ordered pairs are computed once and looked up whenever T > N
# (64 MiB per gathered float32 operand); beyond it only when the table is also smaller than the triplets' gathers.
_PAIR_TABLE_ELEMENTS = 1 << 24


def _uses_pair_table(num_rows: int, dim: int, num_triplets: int) -> bool:
    """Whether :func:`triplet_distances` reads T triplets' distances among N rows of size D from a table of all N²
    ordered pairs: for T > N when the table is small (N²·D ≤ ``_PAIR_TABLE_ELEMENTS``) or has fewer pairs than the
    2T the triplets would compute one by one (batch-all on 256 × 512: 0.4 s and 1 GB instead of 5 s and 5 GB)."""
    pairs = num_rows * num_rows
    return num_triplets > num_rows and (pairs * dim <= _PAIR_TABLE_ELEMENTS or pairs < 2 * num_triplets)


def triplet_distances(
    embeddings: torch.Tensor, triplets: TripletIndices, distance: BaseDistance
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T,) d(a, p) and (T,) d(a, n) of T ``triplets`` of rows of ``embeddings`` (N, D), each the exact
    ``distance.paired`` value, in float32 at least. With more triplets than rows (as
    batch-all and semi-hard mining give) every ordered pair is computed once, O(N²·D), instead of once per
    triplet, O(T·D), where that is cheaper (:func:`_uses_pair_table`)."""
    # Cast before gathering: the gather's backward sums a row's gradient over its triplets, which in 16 bits
    # lost 20–60% of the embeddings' gradient (batch-all on 256 × 512).
    embeddings = at_least_float32(embeddings)
    n, d = embeddings.shape
    if not _uses_pair_table(n, d, len(triplets)):
        anchors = embeddings[triplets.anchor]
        return (distance.paired(anchors, embeddings[triplets.positive]),
                distance.paired(anchors, embeddings[triplets.negative]))
    table = distance.paired(embeddings.repeat_interleave(n, 0), embeddings.repeat(n, 1))  # row i·N + j: d(x_i, x_j)
    return table[triplets.anchor * n + triplets.positive], table[triplets.anchor * n + triplets.negative]


def triplet_margin_loss(
    embeddings: torch.Tensor,
    triplets: TripletIndices,
    margin: float,
    distance: BaseDistance,
    labels: Optional[torch.Tensor] = None,
    class_margins: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """(N, D) embeddings, T triplets of row indices → (T,) losses ``relu(distance.gap(d(a,p), d(a,n)) + m)``.

    Cost O(min(T, N²)·D): each needed distance is computed once. ``m`` is ``margin``, or, when ``class_margins``
    (C, C) is given, ``class_margins[labels[a], labels[n]]`` (ATL; ``margin`` is then unused and ``labels`` (N,)
    needed).
    """
    triplets = check_triplet_indices(triplets, check_shape(embeddings, ["N", "D"], "embeddings")["N"])
    check_finite(embeddings, "embeddings")
    if class_margins is None:
        check_finite_number(margin, "margin")
    to_positive, to_negative = triplet_distances(embeddings, triplets, distance)
    # a float64 class_margins would make the loss float64: the loss follows the embeddings' dtype
    margins = margin if class_margins is None else _triplet_margins(labels, triplets, class_margins).to(to_positive)
    return torch.relu(distance.gap(to_positive, to_negative) + margins)


def counts_suffice(miner: BaseTripletMiner, margin: float, distance: BaseDistance) -> bool:
    """Whether every triplet ``miner`` keeps has a positive loss ``gap + margin`` under ``distance`` (a
    :class:`MarginMiner` with margin ≤ ``margin`` on the same distance), so that the summed loss is linear in the
    pair distances and follows from the miner's pair counts."""
    return (isinstance(miner, MarginMiner) and miner.margin is not None and margin >= miner.margin
            and miner.distance.same_as(distance))


def counted_triplet_margin_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, miner: MarginMiner, margin: float, distance: BaseDistance
) -> tuple[torch.Tensor, int]:
    """``(Σ loss, T)`` over the T triplets ``miner(embeddings (N, D), labels (N,))`` would list, without listing
    them (valid when :func:`counts_suffice`): Σ_(a,p,n) [far(a,p) − far(a,n) + m] = Σ_(a,p) n⁺_ap·far(a,p) −
    Σ_(a,n) n⁻_an·far(a,n) + T·m, with the miner's pair counts n⁺, n⁻ (:meth:`MarginMiner.counts`) and far =
    ``distance.gap(d, 0)`` (d, or −d for similarities) from ``distance.pairwise``: one N×N product with its
    gradient, where listing costs O(T) gathers and an exact distance per pair, O(N²·D) elementwise."""
    distances = distance.pairwise(embeddings)  # the miner's distance too (counts_suffice): computed once
    as_positive, as_negative = miner.counts(embeddings, labels, distances)
    far = distance.farness(distances)
    count = int(as_positive.sum())
    # a pair is a positive or a negative pair, never both: one signed weight per pair
    return ((as_positive - as_negative).to(far.dtype) * far).sum() + count * margin, count


@LOSSES.register("triplet_margin")
class TripletMarginLoss(BaseMetricLoss):
    """``forward(embeddings (N, D), labels (N,), triplets=None) → loss``: :func:`triplet_margin_loss` on the
    given triplets, or on those ``miner`` finds (default: all valid triplets, with the loss's distance). A
    ``miner`` passed in mines with its own distance: give it the loss's, or semi-hard and margin mining select
    triplets by another distance than the one the loss's margin applies to.

    ``distance`` defaults to Euclidean; ``class_margins`` (C, C) gives per-class-pair margins (ATL) instead of
    ``margin``: a buffer that follows the module's device, not a cast of it (``.half()`` leaves them unrounded).
    """

    setting_buffers = ("class_margins",)

    def __init__(
        self,
        margin: float = 0.1,
        distance: Optional[BaseDistance] = None,
        miner: Optional[BaseTripletMiner] = None,
        class_margins: Optional[torch.Tensor] = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(reduction)
        check_finite_number(margin, "margin")
        self.margin = margin
        self.distance = EuclideanDistance() if distance is None else distance
        self.miner = BatchAllMiner(distance=self.distance) if miner is None else miner
        if class_margins is not None:
            check_shape(class_margins, ["C", "C"], "class_margins")
        self.register_buffer("class_margins", class_margins)

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, triplets: Optional[TripletIndices] = None
    ) -> torch.Tensor:
        self.check_inputs(embeddings, labels)
        if triplets is None and self.reduction != "none" and self.sums_from_counts():
            # every mined triplet has a positive loss: sum it from pair counts (mean_nonzero is the mean then)
            total, count = counted_triplet_margin_loss(
                embeddings, labels, self.miner, self.margin, self.distance)  # type: ignore[arg-type]
            return reduce_positive_sum(total, count, self.reduction)
        return reduce_loss(self.compute_loss(embeddings, labels, triplets), self.reduction)

    def sums_from_counts(self) -> bool:
        """Whether the loss of the mined triplets is summed from the miner's pair counts: one margin for every
        triplet (no ``class_margins``) and :func:`counts_suffice`."""
        return self.class_margins is None and counts_suffice(self.miner, self.margin, self.distance)

    def compute_loss(
        self, embeddings: torch.Tensor, labels: torch.Tensor, triplets: Optional[TripletIndices] = None
    ) -> torch.Tensor:
        if triplets is None:
            triplets = self.miner(embeddings, labels)
        return triplet_margin_loss(embeddings, triplets, self.margin, self.distance, labels, self.class_margins)
