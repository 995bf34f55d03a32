"""The streaming pass behind Recall@K and MAP@R: for chunks of queries, which of their nearest neighbours share
their class, with memory bounded by a budget of neighbour entries instead of growing with the number of queries."""
from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from metric.retrieval.knn import ExactIndex, Metric


class NeighbourMatches(NamedTuple):
    """One chunk of queries (rows of the embeddings)."""

    queries: np.ndarray  # (rows,) int64 query indices
    relevant: np.ndarray  # (rows,) int64 R: how many other samples share the query's class (>= 1)
    matches: np.ndarray  # (rows, k) bool: neighbour j (best first, the query itself excluded) has its class


def iter_neighbour_matches(
    embeddings: np.ndarray,
    codes: np.ndarray,
    k: int,
    through_r: bool,
    metric: Metric = "l2",
    chunk_budget: int = 1 << 21,
    gpu: bool = False,
) -> Iterator[NeighbourMatches]:
    """Search every sample among all the others, a chunk of queries at a time.

    Args:
        embeddings: (N, D) float32 host array; queries and references alike.
        codes: (N,) int64 class codes in [0, C).
        k: neighbours needed per query (for Recall@K: the largest K).
        through_r: also reach each query's R-th neighbour (for MAP@R): a query's depth is max(k, R).
        chunk_budget: neighbour entries (rows × depth) held at once; a chunk holds
            max(1, chunk_budget // depth) queries.

    Queries whose class has no other sample (R = 0, "lone") are not yielded: nothing can be retrieved for them.
    Depths are capped at N − 1. Queries run in order of decreasing depth, so a chunk's depth (the largest in it)
    is close to each of its queries' own. Cost: each chunk is an exact pass over all N references, so the whole
    pass is O(N²·D) multiply-adds whatever the chunking (plus O(N·depth) selection); memory is the index
    (N·D floats) plus about ``chunk_budget`` × 21 bytes of neighbour lists and matches.
    """
    n = codes.shape[0]
    relevant = np.bincount(codes)[codes] - 1
    depth = np.maximum(relevant, k) if through_r else np.full(n, k)
    depth = np.minimum(depth, n - 1)
    queries = np.flatnonzero(relevant > 0)
    if queries.size == 0:
        return
    order = queries[np.argsort(-depth[queries], kind="stable")]
    index = ExactIndex(embeddings, metric, gpu=gpu)
    start = 0
    while start < order.size:
        chunk_depth = int(depth[order[start]])
        ids = order[start : start + max(1, chunk_budget // chunk_depth)]
        _, neighbours = index.search(embeddings[ids], chunk_depth, self_ids=ids)
        yield NeighbourMatches(ids, relevant[ids], codes[neighbours] == codes[ids][:, None])
        start += ids.size
