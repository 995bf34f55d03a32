"""Audit s13 of metric/: AP@R takes lists as Recall@K does, and refuses a count R per query that does not fit the
matches (it was broadcast: one R for every query) or is no integer (2.5 was used as a fractional cut)."""
from __future__ import annotations

import numpy as np
import pytest

from metric.retrieval import average_precision_at_r, recall_hits

MATCHES = [[True, False, True, False], [False, True, True, True], [False, False, False, False]]


def naive_ap_at_r(row: list[bool], r: int) -> float:
    hits = [i for i in range(r) if row[i]]
    return sum((j + 1) / (i + 1) for j, i in enumerate(hits)) / r


def test_average_precision_at_r_takes_lists_and_matches_the_loop() -> None:
    expected = [naive_ap_at_r(row, r) for row, r in zip(MATCHES, [2, 3, 1])]
    assert average_precision_at_r(MATCHES, [2, 3, 1]).tolist() == pytest.approx(expected, abs=1e-15)
    assert recall_hits(MATCHES, [1, 2]).tolist() == [[True, True], [False, True], [False, False]]


@pytest.mark.parametrize("relevant,error,message", [
    (np.array([2]), ValueError, r"one R per query, shape \(3,\), got \(1,\)"),
    (np.array([[2, 3, 1]]), ValueError, "one R per query"),
    (np.array([2.5, 1.0, 1.0]), TypeError, "integer counts"),
])
def test_average_precision_at_r_refuses_counts_that_do_not_fit(relevant, error, message) -> None:
    with pytest.raises(error, match=message):
        average_precision_at_r(np.array(MATCHES), relevant)


def test_average_precision_at_r_refuses_matches_that_are_no_bools() -> None:
    with pytest.raises(ValueError, match=r"matches must be a \(Q, k\) bool array"):
        average_precision_at_r(np.array(MATCHES, dtype=int) * 3, np.array([2, 3, 1]))
