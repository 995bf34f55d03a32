"""Exact k-nearest-neighbour search on faiss (IndexFlatL2 / IndexFlatIP), in query chunks, with self-exclusion."""
from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import torch

from metric._checks import check_count, is_integer
from metric.retrieval.faiss_backend import (
    GPU_MAX_K,
    ArrayLike,
    as_float32_rows,
    gpu_device,
    gpu_index,
    import_faiss,
    l2_normalized,
)

Metric = Literal["l2", "cosine", "ip"]
METRICS = ("l2", "cosine", "ip")


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got '{metric}'")


def drop_self(
    distances: np.ndarray, indices: np.ndarray, self_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(Q, k+1) search results → (Q, k) without each query's own reference row ``self_ids[q]``.

    A row whose own index is not among its k+1 results (more than k other references tie with it) loses its
    last column instead, as pytorch-metric-learning does; either way the row is the k nearest others."""
    is_self = indices == self_ids[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    rows = indices.shape[0]
    return distances[keep].reshape(rows, -1), indices[keep].reshape(rows, -1)


class ExactIndex:
    """Brute-force faiss index over ``references (N, D)`` (float32 host array).

    ``metric="l2"`` searches squared Euclidean distances (IndexFlatL2, ascending), ``"ip"`` inner products and
    ``"cosine"`` inner products of L2-normalised rows (IndexFlatIP, descending). With ``gpu`` a CUDA device index
    (faiss built with GPU support) searches run on that GPU, except those asking for more than 2048 neighbours,
    which faiss's GPU selection cannot do: they run on the CPU copy. Ties are ordered by reference index (faiss compares
    (value, index) pairs), so results are deterministic.
    """

    def __init__(self, references: np.ndarray, metric: Metric = "l2", gpu: Optional[int] = None) -> None:
        check_metric(metric)
        faiss = import_faiss()
        self.metric = metric
        self.size, dim = references.shape
        self._cpu = faiss.IndexFlatL2(dim) if metric == "l2" else faiss.IndexFlatIP(dim)
        self._cpu.add(l2_normalized(references) if metric == "cosine" else references)
        self._gpu = None if gpu is None else gpu_index(self._cpu, gpu)

    def search(
        self, queries: np.ndarray, k: int, self_ids: Optional[np.ndarray] = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) float32 queries → ``(values (Q, k) float32, indices (Q, k) int64)``, best first.

        ``self_ids (Q,)``: the reference row of each query, left out of its results."""
        extra = 0 if self_ids is None else 1
        queries = l2_normalized(queries) if self.metric == "cosine" else queries
        index = self._gpu if self._gpu is not None and k + extra <= GPU_MAX_K else self._cpu
        values, indices = index.search(queries, k + extra)
        if self_ids is not None:
            values, indices = drop_self(values, indices, self_ids)
        return values, indices


def knn(
    queries: ArrayLike,
    references: Optional[ArrayLike],
    k: int,
    metric: Metric = "l2",
    exclude_self: Optional[bool] = None,
    chunk_size: int = 4096,
) -> tuple[ArrayLike, ArrayLike]:
    """Exact k nearest references of every query.

    Args:
        queries: (Q, D) torch tensor or numpy array.
        references: (N, D), or None to search the queries among themselves.
        k: neighbours per query, 1 ≤ k ≤ N (N − 1 when excluding self).
        metric: "l2" → squared Euclidean distances, ascending; "cosine" → cosine similarities, descending;
            "ip" → inner products, descending.
        exclude_self: leave query ``i``'s own row ``i`` out of its neighbours (by index, not by distance: an exact
            duplicate elsewhere stays a neighbour). Defaults to ``references is None``; with references given,
            True needs the queries to be the first Q references (checked, as pytorch-metric-learning does).
        chunk_size: queries searched per faiss call; memory is the (Q, k) results plus one chunk's work.

    Returns:
        ``(distances (Q, k) float32, indices (Q, k) int64)``, best first, exact ties in faiss's order: for "l2" the
        smaller index first; for "cosine" and "ip" the larger index first among those listed, but which of more
        tied neighbours than fit in k are listed depends on k and on the other scores, not always the smallest or
        the largest indices (:func:`~metric.retrieval.retrieval_metrics` ranks ties by index instead). Torch
        tensors on the queries' device for tensor queries, numpy arrays for numpy queries. CUDA queries are
        searched on their GPU when faiss has GPU support (for k ≤ 2048), otherwise on the CPU.
    """
    check_metric(metric)
    check_count(chunk_size, 1, "chunk_size")
    q = as_float32_rows(queries, "queries")
    r = q if references is None else as_float32_rows(references, "references")
    if q.shape[1] != r.shape[1]:
        raise ValueError(
            f"queries and references must have the same embedding size D, got {q.shape[1]} and {r.shape[1]}")
    exclude = references is None if exclude_self is None else exclude_self
    if exclude and r.shape[0] < q.shape[0]:
        raise ValueError(
            f"exclude_self needs the queries to be the first Q references, but there are {q.shape[0]} queries "
            f"and only {r.shape[0]} references"
        )
    if exclude and r is not q:
        differs = np.flatnonzero((q != r[: q.shape[0]]).any(axis=1))
        if differs.size:
            raise ValueError(
                f"exclude_self needs the queries to be the first Q references, but query {differs[0]} differs from "
                f"reference {differs[0]} ({differs.size} of {q.shape[0]} queries do)"
            )
    available = r.shape[0] - int(exclude)
    if available < 1:
        raise ValueError(f"no neighbour to search for: {r.shape[0]} references{', self excluded' if exclude else ''}")
    if not is_integer(k) or not 1 <= k <= available:
        excluded = ", self excluded" if exclude else ""
        raise ValueError(f"k must be in [1, {available}] ({r.shape[0]} references{excluded}), got {k}")
    index = ExactIndex(r, metric, gpu=gpu_device(queries))
    k, chunk_size = int(k), int(chunk_size)  # faiss takes no numpy integers
    distances = np.empty((q.shape[0], k), dtype=np.float32)
    indices = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], chunk_size):
        stop = min(start + chunk_size, q.shape[0])
        self_ids = np.arange(start, stop) if exclude else None
        distances[start:stop], indices[start:stop] = index.search(q[start:stop], k, self_ids)
    if isinstance(queries, torch.Tensor):
        return torch.from_numpy(distances).to(queries.device), torch.from_numpy(indices).to(queries.device)
    return distances, indices
