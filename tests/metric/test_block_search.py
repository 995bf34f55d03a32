"""BlockSearch: faiss's neighbour lists (same arithmetic, ties by index, self left out by index) from blocks of
distances, against faiss, the brute-force reference and its own rounding bound."""
from __future__ import annotations

import numpy as np
import pytest

from metric.retrieval import knn
from metric.retrieval.block_search import BlockSearch, flagged, float_from_ordered_bits, ordered_bits
from tests.reference import retrieval as ref


def faiss_lists(x: np.ndarray, metric: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss's k nearest others of every row as ascending scores (distances, or negated similarities), exact ties
    by smaller index (faiss lists tied similarities by larger index first)."""
    values, indices = knn(x, None, k=k, metric=metric)
    scores = values if metric == "l2" else -values
    order = np.lexsort((indices, scores), axis=1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1)


def test_ordered_bits_keep_float_order_and_invert() -> None:
    special = np.array([-np.inf, -3e38, -1.5, -1e-45, -0.0, 0.0, 1e-45, 2.5, 3e38, np.inf], np.float32)
    values = np.concatenate([special, np.random.default_rng(0).normal(size=1000).astype(np.float32)])
    bits = ordered_bits(values)
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(bits[order].astype(np.int64)) >= 0)
    assert bits[4] == bits[5]  # -0.0 and +0.0 compare equal, as floats do
    assert np.array_equal(float_from_ordered_bits(bits)[5:], values[5:])


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_same_lists_as_faiss_on_its_matrix_product_path(metric: str) -> None:
    # 1,100 × 128 queries: faiss computes distances by a matrix product (not pair by pair), as BlockSearch does.
    x = np.random.default_rng(1).normal(size=(1100, 128)).astype(np.float32)
    x[7] = x[3]  # a duplicate: tied with the query it copies
    depth = 40
    expected_scores, expected_indices = faiss_lists(x, metric, depth)
    ids = np.random.default_rng(2).permutation(1100)[:300]
    with BlockSearch(x, metric) as search:
        lists = search.nearest(ids, np.full(ids.size, depth))
    assert np.array_equal(lists.indices, expected_indices[ids])
    assert np.all(np.abs(lists.scores - expected_scores[ids]) <= lists.tolerance[:, None])


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_within_tolerance_of_faiss_on_its_pair_by_pair_path(metric: str) -> None:
    # Few rows, a large common offset: faiss sums (q − x)² pair by pair; ours cancels large norms.
    x = (np.random.default_rng(3).normal(size=(60, 8)) * 0.1 + 30).astype(np.float32)
    expected_scores, expected_indices = faiss_lists(x, metric, 59)
    with BlockSearch(x, metric) as search:
        lists = search.nearest(np.arange(60), np.full(60, 59))
    # Compare pair by pair, in index order (the orders may differ between near-ties within the tolerance).
    ours = np.take_along_axis(lists.scores, np.argsort(lists.indices, axis=1), axis=1)
    theirs = np.take_along_axis(expected_scores, np.argsort(expected_indices, axis=1), axis=1)
    assert np.all(np.abs(ours - theirs) <= lists.tolerance[:, None])
    assert np.any(ours != theirs)  # the two paths do round differently here


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_ties_are_broken_by_smaller_index_and_self_is_left_out(metric: str) -> None:
    # Integer points on a tiny grid: many exact ties (duplicates included), exact in float32.
    x = np.random.default_rng(4).integers(0, 3, size=(50, 2)).astype(np.float32)
    _, expected = ref.knn(x.tolist(), None, 49, metric)
    depth = np.random.default_rng(5).integers(1, 50, size=50)
    with BlockSearch(x, metric) as search:
        lists = search.nearest(np.arange(50), depth)
    for i in range(50):
        assert lists.indices[i, : depth[i]].tolist() == expected[i][: depth[i]]


def test_chunks_of_any_size_and_depth_give_the_same_rows() -> None:
    x = np.random.default_rng(6).normal(size=(200, 6)).astype(np.float32)
    expected_scores, expected_indices = faiss_lists(x, "l2", 199)
    rng = np.random.default_rng(7)
    order = rng.permutation(200)
    with BlockSearch(x, "l2") as search:
        for ids in np.split(order, [1, 3, 60, 61, 130]):  # a smaller chunk after a larger one reuses the block
            depth = rng.integers(1, 200, size=ids.size)
            lists = search.nearest(ids, depth)
            assert lists.scores.shape[1] == depth.max()
            for row, (i, d) in enumerate(zip(ids, depth)):
                assert np.array_equal(lists.indices[row, :d], expected_indices[i, :d])
                assert np.all(np.abs(lists.scores[row, :d] - expected_scores[i, :d]) <= lists.tolerance[row])


def test_a_threshold_below_the_depth_falls_back_to_exact_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(8).normal(size=(300, 5)).astype(np.float32)
    _, expected = faiss_lists(x, "l2", 30)
    too_low = lambda self, ids, products, depth: np.full(ids.size, -1.0, np.float32)  # noqa: E731
    monkeypatch.setattr(BlockSearch, "_threshold", too_low)
    with BlockSearch(x, "l2") as search:
        lists = search.nearest(np.arange(300), np.full(300, 30))
    assert np.array_equal(lists.indices, expected)


def test_memory_is_one_block_of_products_per_worker_whatever_the_chunk() -> None:
    x = np.random.default_rng(9).normal(size=(500, 4)).astype(np.float32)
    with BlockSearch(x, "l2") as whole:  # one block of references per chunk here
        expected = whole.nearest(np.arange(64), np.full(64, 450)).indices
    with BlockSearch(x, "l2", block_products=1024) as search:
        for rows in (40, 10, 64, 25):
            lists = search.nearest(np.arange(rows), np.full(rows, 450))
            assert np.array_equal(lists.indices, expected[:rows])
    # A block holds about 1,024 products (ranges of references × columns, padded to a power of two), not N × rows.
    assert search._products.shape[1] <= 2 * 1024
    assert search._flags.shape[1] == search._products.shape[1] + 8


def test_flagged_is_flatnonzero() -> None:
    flags = np.random.default_rng(10).random(8 * 1000) < 0.02
    flags[[0, 7, 8, 8 * 1000 - 1]] = True
    assert np.array_equal(flagged(flags), np.flatnonzero(flags))


def test_fewer_reference_ranges_than_worker_threads() -> None:
    # A small set is one range of references; with two worker threads one share is empty (once a crash).
    import torch

    x = np.random.default_rng(4).normal(size=(160, 16)).astype(np.float32)
    expected_scores, expected_indices = faiss_lists(x, "l2", 10)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with BlockSearch(x, "l2") as search:
            lists = search.nearest(np.arange(160), np.full(160, 10))
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(lists.indices, expected_indices)
    assert np.all(np.abs(lists.scores - expected_scores) <= lists.tolerance[:, None])
