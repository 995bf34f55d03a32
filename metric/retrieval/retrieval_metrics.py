"""Recall@K, MAP@R and NMI of embeddings in one streaming pass (the protocol: :func:`retrieval_metrics`)."""
from __future__ import annotations

from numbers import Real
from typing import Sequence

import numpy as np

from metric._checks import is_integer
from metric.retrieval.faiss_backend import ArrayLike, LabelsLike, as_float32_rows, as_int64_labels, gpu_device
from metric.retrieval.knn import Metric, check_metric
from metric.retrieval.map_at_r import average_precision_at_r
from metric.retrieval.neighbour_matches import iter_neighbour_matches
from metric.retrieval.nmi import kmeans_nmi
from metric.retrieval.recall_at_k import checked_ks, recall_hits


def retrieval_metrics(
    embeddings: ArrayLike,
    labels: LabelsLike,
    ks: Sequence[int] = (1, 2, 4, 8),
    metric: Metric = "l2",
    with_map_at_r: bool = True,
    with_nmi: bool = True,
    chunk_budget: int = 1 << 26,
    kmeans_seed: int = 1234,
    candidate_budget: int = 1 << 30,
) -> dict[str, float]:
    """Leave-one-out retrieval metrics of ``embeddings (N, D)`` with integer ``labels (N,)`` (a tensor, numpy array
    or list; bools are two classes), as fractions in [0, 1].

    Returns ``{"R@1", "R@2", "R@4", "R@8", "MAP@R", "NMI"}`` (one "R@K" per entry of ``ks``):
      - R@K: share of queries with a same-class sample among their K nearest neighbours (the query excluded).
        R@1 equals pytorch-metric-learning's ``precision_at_1``.
      - MAP@R: mean AP@R (see :func:`average_precision_at_r`), R = other samples of the query's class; equals
        PML's ``mean_average_precision_at_r`` up to neighbours within float32 rounding of each other that faiss
        orders the other way (see :func:`iter_neighbour_matches`).
      - NMI: of a seeded faiss k-means with k = number of classes (see :func:`kmeans_nmi`).
    Embeddings whose mean outweighs their spread are searched ("l2") and clustered centred
    (:func:`~metric.retrieval.faiss_backend.centred`): far from the origin, faiss's float32 expansion of the
    distances loses them to round-off, as PML's search does with ≥ ``distance_compute_blas_threshold / D``
    queries and its k-means (its R@1 and NMI then differ from these: theirs are wrong).
    Every sample is a query and every other sample a reference. A query whose class has a single sample (R = 0)
    is left out of R@K and MAP@R, as PML's AccuracyCalculator leaves out "lone" queries; NaN when every query is
    lone (empty ``embeddings`` raise a ``ValueError``). NMI counts every sample. Neighbours at exactly equal
    distances rank by smaller index (as in faiss, which orders tied *similarities* the other way round and, for
    them, differently with the number it returns).

    ``metric``: "l2" (Euclidean, PML's default), "cosine" or "ip" for the neighbour search. Memory stays bounded
    for any number of queries: the neighbour candidates take ~8 bytes × 1.5 × depth per query (depth: R + 1 with
    MAP@R, max(ks) + 1 without). One pass over the N²/2 pairs finds them (each pair's distance computed once, for
    both of its samples) as long as those waiting for later samples fit ``candidate_budget`` bytes (0: never);
    the queries it leaves out are streamed in chunks of min(1024, ``chunk_budget`` // N) queries (down to a power
    of two, at least 1), each scored against all N samples by matrix products with ~1 MiB blocks of references,
    see :func:`iter_neighbour_matches`.
    """
    check_metric(metric)
    ks = sorted(set(checked_ks(ks)))
    if not is_integer(chunk_budget) or not 1 <= chunk_budget < 1 << 31:
        raise ValueError(f"chunk_budget must be in [1, 2^31), got {chunk_budget}")
    if isinstance(candidate_budget, bool) or not isinstance(candidate_budget, Real) or not candidate_budget >= 0:
        raise ValueError(f"candidate_budget must be a number of bytes >= 0, got {candidate_budget!r}")
    chunk_budget = int(chunk_budget)  # a numpy integer has no bit_length
    x = as_float32_rows(embeddings, "embeddings")
    if x.shape[0] == 0:
        raise ValueError("embeddings is empty: retrieval metrics need at least one sample")
    _, codes = np.unique(as_int64_labels(labels, x.shape[0]), return_inverse=True)
    hits = np.zeros(len(ks), dtype=np.int64)
    ap_sum, queries = 0.0, 0
    chunks = iter_neighbour_matches(
        x, codes.reshape(-1), ks, with_map_at_r, metric, chunk_budget, gpu_device(embeddings), candidate_budget
    )
    for chunk in chunks:
        hits += recall_hits(chunk.nearest, ks).sum(axis=0)
        if with_map_at_r:
            ap_sum += float(average_precision_at_r(chunk.matches, chunk.relevant).sum())
        queries += chunk.queries.size

    def mean(total: float) -> float:
        return float(total) / queries if queries else float("nan")

    result = {f"R@{k}": mean(h) for k, h in zip(ks, hits)}
    if with_map_at_r:
        result["MAP@R"] = mean(ap_sum)
    if with_nmi:
        result["NMI"] = kmeans_nmi(embeddings, labels, metric=metric, seed=kmeans_seed)
    return result
