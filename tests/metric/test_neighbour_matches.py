"""The streaming pass: Recall@K hits settled under any rounding within the tolerance, unsettled queries searched
again with faiss in batches, every query yielded once with faiss's exact nearest matches."""
from __future__ import annotations

import math

import numpy as np
import pytest

from metric.retrieval import knn, neighbour_matches
from metric.retrieval.block_search import NearestLists
from metric.retrieval.faiss_backend import import_faiss
from metric.retrieval.knn import ExactIndex
from metric.retrieval.neighbour_matches import exact_batch_size, is_settled, iter_neighbour_matches

KS = [1, 2, 4, 8]


def test_settled_hits_hold_for_any_rounding_within_the_tolerance() -> None:
    rng = np.random.default_rng(0)
    rows, world, depth = 600, 14, 10
    # Scores on a coarse grid: exact ties and near-ties everywhere; the list shows the first `depth` of the world.
    scores = np.sort(rng.integers(0, 10, size=(rows, world)) * 0.5, axis=1).astype(np.float32)
    tolerance = rng.choice([0.0, 0.1, 0.25, 0.6], size=rows)
    matches = rng.random((rows, world)) < 0.35
    lists = NearestLists(scores[:, :depth], np.tile(np.arange(depth), (rows, 1)), tolerance)
    settled = is_settled(lists, matches[:, :depth], np.full(rows, depth), KS)
    assert 0.2 < settled.mean() < 0.95  # both kinds occur: the check below is not vacuous
    ours = {k: matches[:, :k].any(axis=1) for k in KS}
    for _ in range(300):
        # faiss's values: anywhere within the tolerance of ours (its ends included), ties in any order.
        ends = rng.choice([-1.0, 1.0], (rows, world))
        shift = np.where(rng.random((rows, world)) < 0.3, ends, rng.uniform(-1, 1, (rows, world)))
        theirs = scores + shift * tolerance[:, None]
        order = np.lexsort((rng.random((rows, world)), theirs), axis=1)
        ranked = np.take_along_axis(matches, order, axis=1)
        for k in KS:
            assert np.array_equal(ranked[settled, :k].any(axis=1), ours[k][settled])


def test_clear_gaps_are_settled_and_ties_between_match_and_miss_are_not() -> None:
    scores = np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 2.0, 3.0], [0.0, 0.0, 2.0, 3.0]], np.float32)
    matches = np.array([[False, True, False, False], [False, True, False, False], [True, True, False, False]])
    lists = NearestLists(scores, np.tile(np.arange(4), (3, 1)), np.array([0.1, 0.1, 0.1]))
    # Row 1: a tie at rank 1 between a miss and a match; row 2: both tied ones match, so R@1 is a hit either way.
    assert is_settled(lists, matches, np.full(3, 4), [1]).tolist() == [True, False, True]
    assert is_settled(lists, matches, np.full(3, 4), [2]).tolist() == [True, True, True]


def test_exact_batch_size_is_what_makes_faiss_use_its_matrix_product_path() -> None:
    threshold = import_faiss().cvar.distance_compute_blas_threshold
    assert exact_batch_size(10**6, 128) == math.ceil(threshold / 128)
    assert exact_batch_size(50, 128) == 50  # fewer queries than that: all of them, as a single faiss search


def clustered(n: int, dim: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, classes, n)
    return (rng.normal(size=(classes, dim))[codes] + 1.5 * rng.normal(size=(n, dim))).astype(np.float32), codes


def faiss_nearest_matches(x: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    _, neighbours = knn(x, None, k=k)
    return codes[neighbours] == codes[:, None]


@pytest.mark.parametrize("symmetric", [False, True])
def test_every_query_once_with_faiss_nearest_matches(symmetric: bool) -> None:
    x, codes = clustered(300, 8, 20)
    codes[:3] = [100, 101, 102]  # lone queries: not yielded
    codes[3:5] = 103  # a class of two: R = 1
    expected = faiss_nearest_matches(x, codes, 8)
    seen = []
    budget = 1 << 30 if symmetric else 0
    for chunk in iter_neighbour_matches(x, codes, KS, True, chunk_budget=300 * 7, candidate_budget=budget):
        seen.extend(chunk.queries.tolist())
        assert np.array_equal(chunk.nearest, expected[chunk.queries])
        assert np.array_equal(chunk.matches[:, :8], expected[chunk.queries])
        assert chunk.matches.shape[1] >= chunk.relevant.max() and (symmetric or chunk.queries.size <= 7)
        assert np.array_equal(chunk.relevant, np.bincount(codes)[codes[chunk.queries]] - 1)
    assert sorted(seen) == list(range(3, 300))


def test_unsettled_queries_are_searched_again_in_faiss_sized_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    x, codes = clustered(1100, 512, 30)  # enough queries for faiss's matrix-product path, in batches of 250
    expected = faiss_nearest_matches(x, codes, 8)
    monkeypatch.setattr(neighbour_matches, "is_settled", lambda lists, *args: np.arange(lists.scores.shape[0]) % 3 == 0)
    batches = []
    search = ExactIndex.search

    def spy(self, queries, k, self_ids=None):
        batches.append(queries.shape[0])
        return search(self, queries, k, self_ids)

    monkeypatch.setattr(ExactIndex, "search", spy)
    seen = []
    for chunk in iter_neighbour_matches(x, codes, KS, True, chunk_budget=1100 * 100, candidate_budget=0):
        seen.extend(chunk.queries.tolist())
        assert np.array_equal(chunk.nearest, expected[chunk.queries])
    assert sorted(seen) == list(range(1100))
    # Chunks of 64 queries (the budget's 100, down to a power of two): 42 of each rechecked, in batches of at least
    # faiss's matrix-product size: 6 chunks' worth (252), 6 more, then the last 5 chunks' 210 and the 8 of the
    # final 12-query chunk, topped up with other queries.
    assert exact_batch_size(1100, 512) == 250
    assert batches == [252, 252, 250]
