"""Recall@K: a query counts if one of its K nearest neighbours (itself excluded) has its class."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def recall_hits(matches: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """(Q, k) bool matches of each query's neighbours, best first → (Q, len(ks)) bool hits at each K.

    With K > k the k available neighbours are used."""
    first = np.where(matches.any(axis=1), matches.argmax(axis=1), np.iinfo(np.int64).max)
    return first[:, None] < np.asarray(ks, dtype=np.int64)[None, :]
