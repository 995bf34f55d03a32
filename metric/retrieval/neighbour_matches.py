"""The streaming pass behind Recall@K and MAP@R: for chunks of queries, which of their nearest neighbours share
their class, with memory bounded by a budget of scores instead of growing with the number of queries."""
from __future__ import annotations

import math
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np

from metric.retrieval.block_search import BlockSearch, NearestLists
from metric.retrieval.faiss_backend import centred, import_faiss
from metric.retrieval.knn import ExactIndex, Metric

# Queries per chunk at most: larger blocks are no faster (the matrix product is already efficient), only bigger.
MAX_CHUNK = 1024


class NeighbourMatches(NamedTuple):
    """One chunk of queries (rows of the embeddings)."""

    queries: np.ndarray  # (rows,) int64 query indices
    relevant: np.ndarray  # (rows,) int64 R: how many other samples share the query's class (>= 1)
    matches: np.ndarray  # (rows, width >= depth) bool: neighbour j (best first, the query excluded) has its class
    nearest: np.ndarray  # (rows, k) bool: the same for the k nearest, exactly as a faiss search ranks them


def iter_neighbour_matches(
    embeddings: np.ndarray,
    codes: np.ndarray,
    ks: Sequence[int],
    through_r: bool,
    metric: Metric = "l2",
    chunk_budget: int = 1 << 26,
    gpu: Optional[int] = None,
    candidate_budget: int = 1 << 30,
) -> Iterator[NeighbourMatches]:
    """Search every sample among all the others, a chunk of queries at a time.

    Args:
        embeddings: (N, D) float32 host array; queries and references alike.
        codes: (N,) int64 class codes in [0, C).
        ks: the K of Recall@K; ``nearest`` holds the k = min(max(ks), N − 1) nearest.
        through_r: also reach each query's R-th neighbour (for MAP@R): a query's depth is max(k, R) (+ 1, see
            :func:`is_settled`).
        chunk_budget: (< 2³¹) a chunk holds min(1024, chunk_budget // N) queries, down to a power of two (≥ 1).
        candidate_budget: bytes of neighbour candidates the symmetric pass may hold (see
            :meth:`BlockSearch.symmetric`); 0 searches chunks of queries only.

    Queries whose class has no other sample (R = 0, "lone") are not yielded: nothing can be retrieved for them.
    A symmetric pass (:meth:`BlockSearch.symmetric`) computes each pair's product once, for both of its rows, and
    yields a tile of rows at a time, as long as the candidates waiting for later tiles (~8 bytes × 1.5 × depth
    per query in all) fit ``candidate_budget``; the queries of the tiles it leaves out then run in chunks, in
    order of decreasing depth (so a chunk's lists are about as deep as each of its queries needs), each one
    :meth:`BlockSearch.nearest` call: O(N·D) multiply-adds per query; memory is then one ~1 MiB block of
    products per thread plus one chunk's candidates, whatever the number of queries. Either way ~1.5 × depth
    candidates per query are scored and sorted.

    ``matches`` ranks neighbours by BlockSearch's scores, which are faiss's distances wherever faiss's BLAS rounds
    a dot product as torch's does (most pairs, see :class:`BlockSearch`); elsewhere two neighbours within float32
    rounding of each other may swap, and MAP@R agrees with faiss (and so with pytorch-metric-learning) up to such
    near-ties (3.8e-9 at 100,000 × 128, see benchmarks/metric_vs_pml.py). For "l2" that rounding grows with
    ‖q‖² + ‖x‖², so embeddings whose mean dominates their norms are searched centred
    (:func:`~metric.retrieval.faiss_backend.centred`).
    ``nearest`` is exact in any case (faiss's ranking, of the centred rows when they are): a query is settled when
    no rounding of its scores within the bound of both computations can change its Recall@K hit at any K of ``ks``
    (see :func:`is_settled`); the other queries are searched again with faiss (:class:`ExactRecheck`) and yielded
    in later chunks.
    """
    n = codes.shape[0]
    relevant = np.bincount(codes)[codes] - 1
    queries = np.flatnonzero(relevant > 0)
    if queries.size == 0:
        return
    if metric == "l2":
        embeddings = centred(embeddings)
    k = min(max(ks), n - 1)
    # One neighbour more than needed: the gap after the K-th score tells whether its K nearest are settled.
    depth = np.minimum((np.maximum(relevant, k) if through_r else np.full(n, k)) + 1, n - 1)
    boundaries = [K for K in sorted(set(ks)) if K < n - 1]
    order = queries[np.argsort(-depth[queries], kind="stable")]
    # A power of two: BlockSearch pads a chunk's columns to one.
    rows = 1 << (max(1, min(MAX_CHUNK, chunk_budget // n)).bit_length() - 1)
    exact = ExactRecheck(embeddings, codes, k, metric, gpu)
    with BlockSearch(embeddings, metric) as search:
        for ids, lists in nearest_lists(search, order, depth, rows, candidate_budget):
            matches = np.append(codes, -1)[lists.indices] == codes[ids][:, None]
            settled = is_settled(lists, matches, depth[ids], boundaries)
            yield NeighbourMatches(ids[settled], relevant[ids[settled]], matches[settled], matches[settled, :k])
            yield from exact.add(ids[~settled], relevant[ids[~settled]], matches[~settled])
    yield from exact.flush()


def nearest_lists(
    search: BlockSearch, order: np.ndarray, depth: np.ndarray, rows: int, candidate_budget: int
) -> Iterator[tuple[np.ndarray, NearestLists]]:
    """``(ids, lists)`` covering each query of ``order`` once: the tiles of the symmetric pass (none when
    ``candidate_budget`` is 0), then chunks of ``rows`` queries, in ``order``, for those it left out."""
    threshold = np.full(search.size, -np.inf, np.float32)
    threshold[order] = search.thresholds(order, depth[order])
    done = np.zeros(search.size, bool)
    if candidate_budget > 0:
        query_depth = np.zeros_like(depth)
        query_depth[order] = depth[order]
        for ids, lists in search.symmetric(query_depth, threshold, candidate_budget):
            done[ids] = True
            yield ids, lists
    left = order[~done[order]]
    for start in range(0, left.size, rows):
        ids = left[start : start + rows]
        yield ids, search.nearest(ids, depth[ids], threshold[ids])


def is_settled(lists: NearestLists, matches: np.ndarray, depth: np.ndarray, boundaries: Sequence[int]) -> np.ndarray:
    """(rows,) bool: whether each query's Recall@K hit, at every K of ``boundaries``, is the same for any scores
    within 2·tolerance of ours (as faiss's distances are, shifted by a constant per query), ties in any order.

    At K: a neighbour scored more than 2·tolerance below the (K+1)-th is surely among the K nearest; one scored
    more than 2·tolerance above the K-th surely is not (when the list reaches that far); the others may be. The
    hit is sure when a sure neighbour matches, or when the unsure non-matching ones cannot fill the places left;
    the miss is sure when no neighbour that may be among the K nearest matches."""
    scores = lists.scores.astype(np.float64)
    margin = 2 * lists.tolerance[:, None]
    deepest = np.take_along_axis(scores, depth[:, None] - 1, axis=1)[:, 0]
    settled = np.ones(scores.shape[0], dtype=bool)
    for k in boundaries:
        reach = scores[:, k - 1] + margin[:, 0]
        covered = deepest > reach
        may = scores <= reach[:, None]
        sure = scores[:, :k] + margin < scores[:, k : k + 1]
        places = k - sure.sum(axis=1)
        unsure_misses = (may & ~matches).sum(axis=1) - (sure & ~matches[:, :k]).sum(axis=1)
        sure_hit = (sure & matches[:, :k]).any(axis=1) | (covered & (unsure_misses < places))
        sure_miss = covered & ~(may & matches).any(axis=1)
        settled &= sure_hit | sure_miss
    return settled


def exact_batch_size(n: int, dim: int) -> int:
    """Queries per faiss search that make faiss compute distances the way it does for all ``n`` queries at once.

    faiss's exhaustive search takes its matrix-product path for at least ``distance_compute_blas_threshold / D``
    queries and computes distances one pair at a time below that: the two round differently."""
    return min(n, math.ceil(import_faiss().cvar.distance_compute_blas_threshold / dim))


class ExactRecheck:
    """Collects unsettled queries and searches them with faiss in batches of :func:`exact_batch_size` queries
    (topped up with other rows, whose results are dropped), so that faiss computes their distances as it does in
    a search of all N queries at once (pytorch-metric-learning's), and memory stays bounded by one batch."""

    def __init__(self, embeddings: np.ndarray, codes: np.ndarray, k: int, metric: Metric, gpu: Optional[int]) -> None:
        self.embeddings, self.codes, self.k, self.metric, self.gpu = embeddings, codes, k, metric, gpu
        self.batch = exact_batch_size(*embeddings.shape)
        self._index: ExactIndex | None = None
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._count = 0

    def add(self, ids: np.ndarray, relevant: np.ndarray, matches: np.ndarray) -> Iterator[NeighbourMatches]:
        if ids.size:
            self._pending.append((ids, relevant, matches))
            self._count += ids.size
        if self._count >= self.batch:
            yield from self.flush()

    def flush(self) -> Iterator[NeighbourMatches]:
        if not self._pending:
            return
        ids = np.concatenate([p[0] for p in self._pending])
        relevant = np.concatenate([p[1] for p in self._pending])
        width = max(p[2].shape[1] for p in self._pending)
        matches = np.concatenate([np.pad(p[2], ((0, 0), (0, width - p[2].shape[1]))) for p in self._pending])
        self._pending, self._count = [], 0
        nearest = self.codes[self._nearest(ids)] == self.codes[ids][:, None]
        yield NeighbourMatches(ids, relevant, matches, nearest)

    def _nearest(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), k) the k nearest others of each query by faiss's values, ties by smaller index.

        faiss's own tie order differs for similarities (larger index first, and which tied neighbours make its
        list depends on how many it returns), so this searches one neighbour deeper than k, or more until the last
        one scores strictly worse than the k-th (the tie group at k is then whole), and sorts by (score, index)."""
        if self._index is None:
            self._index = ExactIndex(self.embeddings, self.metric, gpu=self.gpu)
        available = self.embeddings.shape[0] - 1
        batch = np.concatenate([ids, np.arange(max(0, self.batch - ids.size))])
        depth = min(self.k + 1, available)
        while True:
            values, neighbours = self._index.search(self.embeddings[batch], depth, self_ids=batch)
            scores, neighbours = (values if self.metric == "l2" else -values)[: ids.size], neighbours[: ids.size]
            if depth == available or np.all(scores[:, -1] > scores[:, self.k - 1]):
                break
            depth = min(2 * depth, available)
        order = np.lexsort((neighbours, scores), axis=1)[:, : self.k]
        return np.take_along_axis(neighbours, order, axis=1)
