"""MAP@R (Musgrave, Belongie, Lim, "A Metric Learning Reality Check", 2020)."""
from __future__ import annotations

import numpy as np

from metric.retrieval.recall_at_k import checked_matches


def average_precision_at_r(matches: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """AP@R of each query, float64 (Q,).

    ``AP@R = (1/R) Σ_{i=1..R} P(i)·rel(i)``, where R = ``relevant`` (other samples of the query's class, ≥ 1),
    rel(i) = neighbour i has the query's class and P(i) = matches among the first i neighbours / i.
    ``matches (Q, k)`` bool, best first, with k ≥ each query's R (columns past R are ignored); ``relevant (Q,)``
    integers. Arrays or lists.
    """
    matches, relevant = checked_matches(matches), np.asarray(relevant)
    if relevant.shape != matches.shape[:1]:
        raise ValueError(f"relevant must hold one R per query, shape ({matches.shape[0]},), got {relevant.shape}")
    if relevant.size and relevant.dtype.kind not in "iu":
        raise TypeError(f"relevant must hold integer counts R, got {relevant.dtype}")
    if relevant.size and relevant.min() < 1:
        raise ValueError(
            f"every query needs R >= 1 relevant samples (leave lone queries out), got R = {relevant.min()}")
    if relevant.size and relevant.max() > matches.shape[1]:
        raise ValueError(
            f"matches hold {matches.shape[1]} neighbours per query, fewer than the largest R = {relevant.max()}"
        )
    ranks = np.arange(1, matches.shape[1] + 1)
    hits = matches & (ranks[None, :] <= relevant[:, None])
    precision = np.cumsum(hits, axis=1) / ranks
    return (precision * hits).sum(axis=1) / relevant
