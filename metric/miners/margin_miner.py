"""Miners that keep every valid triplet whose gap passes a test: they can count instead of listing."""
from __future__ import annotations

from typing import Callable, Iterator, Optional

import torch

from metric._checks import check_same_size, check_shape
from metric.distances.base_distance import BaseDistance
from metric.miners.base_miner import BaseTripletMiner, TripletIndices, check_mining_inputs, positive_negative_masks


# Elements of one anchor block's (anchors, P, N) gap tensor: bounds the miners' temporary memory (~64 MiB).
_BLOCK_ELEMENTS = 1 << 22
# Batches with at most this many (a, p, n) candidates are counted in one broadcast (B ≤ 64).
_ONE_SHOT_ELEMENTS = 1 << 18


def _kept_blocks(
    distances: torch.Tensor, labels: torch.Tensor, distance: BaseDistance, keep: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(anchors (A,), positives (P,), negatives (N,), kept (A, P, N) bool)``: batch indices and which valid
    (a, p, n) of them satisfy ``keep(gap)``, class by class (every anchor once), in blocks of anchors holding at most
    ``_BLOCK_ELEMENTS`` candidates. Only a class's own positives and negatives are tested (Σ_c n_c²·(B − n_c)
    candidates, a quarter of B³ for two balanced classes)."""
    far = distance.farness(distances)  # gap = far(a,p) − far(a,n), exactly distance.gap's value
    order = torch.argsort(labels, stable=True)
    counts = torch.unique_consecutive(labels[order], return_counts=True)[1]
    for members in torch.split(order, counts.tolist()):
        others = (labels != labels[members[0]]).nonzero().squeeze(1)
        if len(members) < 2 or not len(others):
            continue
        of_anchors = far[members]
        to_positive, to_negative = of_anchors[:, members], of_anchors[:, others]
        not_self = ~torch.eye(len(members), dtype=torch.bool, device=labels.device)
        rows = max(1, _BLOCK_ELEMENTS // (len(members) * len(others)))
        for start in range(0, len(members), rows):
            block = slice(start, start + rows)
            gaps = to_positive[block].unsqueeze(2) - to_negative[block].unsqueeze(1)  # (A, P, N)
            yield members[block], members, others, keep(gaps) & not_self[block].unsqueeze(2)


def triplets_where(
    distances: torch.Tensor, labels: torch.Tensor, distance: BaseDistance, keep: Callable[[torch.Tensor], torch.Tensor]
) -> TripletIndices:
    """Valid (a, p, n) whose gap ``distance.gap(d(a,p), d(a,n))`` satisfies ``keep(gap)`` (an elementwise boolean
    test), read from the batch's (B, B) pairwise ``distances``; ordered by the anchor's class, then (a, p, n).
    Memory O(B² + T) (blocks of :func:`_kept_blocks`), and no per-triplet arithmetic."""
    found = []
    for anchors, positives, negatives, kept in _kept_blocks(distances, labels, distance, keep):
        a, p, n = kept.nonzero(as_tuple=True)
        found.append((anchors[a], positives[p], negatives[n]))
    if not found:
        return TripletIndices.empty(labels.device)
    return TripletIndices(*(torch.cat(parts) for parts in zip(*found)))


def triplet_counts_where(
    distances: torch.Tensor, labels: torch.Tensor, distance: BaseDistance, keep: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """How often each pair takes part in the triplets :func:`triplets_where` would return, without listing them:
    ``(B, B)`` int64 ``as_positive[a, p]`` = #kept (a, p, ·) and ``as_negative[a, n]`` = #kept (a, ·, n).
    Their sums both equal the number of triplets. Memory O(B²) besides one block."""
    b = labels.shape[0]
    if b**3 <= _ONE_SHOT_ELEMENTS:  # small batches: one broadcast over all B³ candidates beats a loop over classes
        far = distance.farness(distances)
        positives, negatives = positive_negative_masks(labels)
        kept = keep(far.unsqueeze(2) - far.unsqueeze(1)) & positives.unsqueeze(2) & negatives.unsqueeze(1)
        return kept.sum(2), kept.sum(1)
    as_positive = torch.zeros(b, b, dtype=torch.long, device=labels.device)
    as_negative = torch.zeros_like(as_positive)
    for anchors, positives, negatives, kept in _kept_blocks(distances, labels, distance, keep):
        rows = anchors.unsqueeze(1)  # each anchor appears in one block only: plain assignment, no accumulation
        as_positive[rows, positives] = kept.sum(2)
        as_negative[rows, negatives] = kept.sum(1)
    return as_positive, as_negative


class MarginMiner(BaseTripletMiner):
    """Keeps every valid (a, p, n) whose gap (``distance.gap(d(a,p), d(a,n))``) passes ``keep(gap)``, a test that
    implies ``gap > −margin`` (any gap when ``margin`` is None); subclasses write ``keep``.

    A triplet margin loss with margin ≥ ``margin`` (same distance) is then positive on every kept triplet, i.e.
    linear in its two distances, so the loss summed over the kept triplets needs only how often each pair takes
    part (:meth:`counts`), not the triplets themselves."""

    margin: Optional[float]

    def keep(self, gap: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        return triplets_where(self.distance.pairwise(embeddings), labels, self.distance, self.keep)

    @torch.no_grad()
    def counts(self, embeddings: torch.Tensor, labels: torch.Tensor,
               distances: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``embeddings (N, D)``, ``labels (N,)`` → ``(N, N)`` int64 ``as_positive[a, p]``, ``as_negative[a, n]``: in
        how many of the triplets :meth:`mine` returns each pair is the (anchor, positive) or (anchor, negative).
        ``distances``: this miner's ``(N, N)`` pairwise distances of ``embeddings`` when the caller has them."""
        check_mining_inputs(embeddings, labels)
        if distances is None:
            distances = self.distance.pairwise(embeddings.detach())
        else:  # a larger matrix would be read without an error, as the distances of other pairs
            check_same_size(embeddings.shape[0], check_shape(distances, ["N", "N"], "distances")["N"],
                            "embeddings and the rows of distances")
        return triplet_counts_where(distances.detach(), labels, self.distance, self.keep)
