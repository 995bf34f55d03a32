"""Recall@K: a query counts if one of its K nearest neighbours (itself excluded) has its class."""
from __future__ import annotations

from typing import Sequence

import numpy as np

MAX_K = 1 << 62  # beyond it the neighbour counts would overflow int64


def checked_ks(ks: Sequence[int]) -> list[int]:
    """``ks`` as ints, in the order given; a ``ValueError`` unless each is a whole number in [1, ``MAX_K``] (2.5 is
    not truncated to R@2, True is no K) and there is at least one; a ``TypeError`` if ``ks`` is no sequence (ks=5)."""
    try:
        given = list(ks)
    except TypeError:
        raise TypeError(f"ks must be a sequence of positive integers, e.g. (1, 2, 4, 8), got {ks!r}") from None
    try:
        whole = [int(k) for k in given if not isinstance(k, bool) and int(k) == k and 1 <= k <= MAX_K]
    except (TypeError, ValueError, OverflowError):  # not a number, NaN, infinite
        whole = []
    if not given or len(whole) != len(given):
        raise ValueError(f"ks must be positive integers (at most 2^62), got {given}")
    return whole


def checked_matches(matches: np.ndarray) -> np.ndarray:
    """``matches`` (an array or nested lists) as a (Q, k) bool array; ``ValueError`` for another shape or dtype."""
    matches = np.asarray(matches)
    if matches.ndim != 2 or matches.dtype != bool:
        raise ValueError(f"matches must be a (Q, k) bool array, got shape {matches.shape} ({matches.dtype})")
    return matches


def recall_hits(matches: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """(Q, k) bool matches of each query's neighbours, best first → (Q, len(ks)) bool hits at each K of ``ks`` (in
    the order given; positive integers, see :func:`checked_ks`).

    With K > k the k available neighbours are used; with k = 0 (no neighbour, e.g. a set of one sample) no query
    has a hit."""
    matches = checked_matches(matches)
    limits = np.minimum(np.asarray(checked_ks(ks), dtype=np.int64), matches.shape[1])
    if matches.shape[1] == 0:
        return np.zeros((matches.shape[0], limits.size), dtype=bool)
    first = np.where(matches.any(axis=1), matches.argmax(axis=1), matches.shape[1])
    return first[:, None] < limits[None, :]
