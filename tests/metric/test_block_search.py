"""BlockSearch: faiss's neighbour lists (same arithmetic, ties by index, self left out by index) from blocks of
distances, against faiss, the brute-force reference and its own rounding bound."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from metric.retrieval import knn
from metric.retrieval.block_search import (
    BlockSearch,
    NearestLists,
    flagged,
    float_from_ordered_bits,
    kth_smallest,
    ordered_bits,
    sorted_by_row,
)
from tests.reference import retrieval as ref


def faiss_lists(x: np.ndarray, metric: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss's k nearest others of every row as ascending scores (distances, or negated similarities), exact ties
    by smaller index (faiss lists tied similarities by larger index first)."""
    values, indices = knn(x, None, k=k, metric=metric)
    scores = values if metric == "l2" else -values
    order = np.lexsort((indices, scores), axis=1)
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1)


def gathered(tiles, n: int) -> NearestLists:
    """The (ids, lists) tiles of :meth:`BlockSearch.symmetric` as one NearestLists in row order (rows that were
    no query: empty), each row padded with (inf, n) to the widest."""
    tiles = list(tiles)
    width = max([lists.scores.shape[1] for _, lists in tiles], default=0)
    scores, indices, tolerance = np.full((n, width), np.inf, np.float32), np.full((n, width), n), np.zeros(n)
    seen = np.zeros(n, int)
    for ids, lists in tiles:
        seen[ids] += 1
        scores[ids, : lists.scores.shape[1]], indices[ids, : lists.scores.shape[1]] = lists.scores, lists.indices
        tolerance[ids] = lists.tolerance
    assert seen.max(initial=0) <= 1  # every query in one tile only
    return NearestLists(scores, indices, tolerance)


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
    # The same lists, but for the order of near-ties: the two matrix products may round a score one ulp apart on
    # some CPUs (one swapped pair of 12,000 entries for "ip" on one machine, none on another).
    differ = lists.indices != expected_indices[ids]
    assert differ.sum() <= 4
    for row in np.unique(np.nonzero(differ)[0]):
        assert set(lists.indices[row]) == set(expected_indices[ids][row])
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


@pytest.mark.parametrize("symmetric", [False, True])
def test_a_threshold_below_the_depth_falls_back_to_exact_selection(
    monkeypatch: pytest.MonkeyPatch, symmetric: bool
) -> None:
    x = np.random.default_rng(8).normal(size=(300, 5)).astype(np.float32)
    _, expected = faiss_lists(x, "l2", 30)
    too_low = lambda self, ids, products, depth: np.full(ids.size, -1.0, np.float32)  # noqa: E731
    monkeypatch.setattr(BlockSearch, "_threshold", too_low)
    with BlockSearch(x, "l2", block_products=64**2) as search:
        depth = np.full(300, 30)
        if symmetric:
            lists = gathered(search.symmetric(depth, search.thresholds(np.arange(300), depth), 1 << 30), 300)
        else:
            lists = search.nearest(np.arange(300), depth)
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


def symmetric_lists(
    x: np.ndarray, metric: str, depth: np.ndarray, block_products: int, budget: int = 1 << 30
) -> NearestLists:
    with BlockSearch(x, metric, block_products=block_products) as search:
        queries = np.flatnonzero(depth > 0)
        threshold = np.full(x.shape[0], -np.inf, np.float32)
        threshold[queries] = search.thresholds(queries, depth[queries])
        return gathered(search.symmetric(depth, threshold, budget), x.shape[0])


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_symmetric_pass_gives_faiss_lists_and_the_chunked_scores(metric: str) -> None:
    # 1,100 rows in tiles of 64 (and 76 last): rows meet columns of their own tile, of later tiles (as rows) and
    # of earlier tiles (as columns); a duplicate pair and rows that are no query (depth 0).
    x = np.random.default_rng(11).normal(size=(1100, 128)).astype(np.float32)
    x[900] = x[5]
    depth = np.random.default_rng(12).integers(1, 60, size=1100)
    depth[[0, 64, 500, 1099]] = 0
    expected_scores, expected_indices = faiss_lists(x, metric, 60)
    lists = symmetric_lists(x, metric, depth, 64**2)
    with BlockSearch(x, metric) as search:
        chunked = search.nearest(np.arange(1100), np.maximum(depth, 1))
    for i in range(1100):
        d = depth[i]
        # The same lists and floats as a search by chunks of queries: a pair's product rounds alike either way round.
        assert np.array_equal(lists.indices[i, :d], chunked.indices[i, :d]), i
        assert np.array_equal(lists.scores[i, :d], chunked.scores[i, :d]), i
        # faiss's OpenBLAS rounds a few percent of the dot products differently (the duplicate's two copies may
        # even differ): within the tolerance, in the same order but for near-ties.
        assert np.all(np.abs(lists.scores[i, :d] - expected_scores[i, :d]) <= lists.tolerance[i])
    queries = depth > 0
    assert np.mean(lists.indices[queries, 0] == expected_indices[queries, 0]) > 0.99
    assert np.all(lists.indices[depth == 0] == 1100)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("block_products", [1, 1 << 18])  # tiles of 32 and 38 rows (the least), one tile
def test_symmetric_pass_ties_by_smaller_index_and_self_left_out(metric: str, block_products: int) -> None:
    # Integer points on a tiny grid (exact in float32): ties and duplicates everywhere, across tiles and within.
    x = np.random.default_rng(13).integers(0, 3, size=(70, 2)).astype(np.float32)
    _, expected = ref.knn(x.tolist(), None, 69, metric)
    depth = np.random.default_rng(14).integers(0, 70, size=70)
    lists = symmetric_lists(x, metric, depth, block_products)
    for i in range(70):
        assert lists.indices[i, : depth[i]].tolist() == expected[i][: depth[i]]


def test_symmetric_pass_agrees_with_query_chunks_and_with_two_threads() -> None:
    import torch

    x = np.random.default_rng(15).normal(size=(700, 16)).astype(np.float32)
    depth = np.random.default_rng(16).integers(1, 120, size=700)
    with BlockSearch(x, "l2") as search:
        chunked = search.nearest(np.arange(700), depth)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lists = symmetric_lists(x, "l2", depth, 32**2)
    finally:
        torch.set_num_threads(threads)
    for i, d in enumerate(depth):
        assert np.array_equal(lists.indices[i, :d], chunked.indices[i, :d])
        assert np.array_equal(lists.scores[i, :d], chunked.scores[i, :d])


def test_symmetric_pass_within_a_budget_leaves_out_the_last_tiles() -> None:
    # Collapsed embeddings (all equal): every pair ties, so every row is a candidate of every other row and the
    # candidates waiting for later tiles grow as N²; the budget caps them by leaving out the last tiles.
    n, depth = 3072, np.full(3072, 40)
    x = np.ones((n, 8), np.float32)
    peaks, yielded = {}, []
    with BlockSearch(x, "l2", block_products=32**2) as search:  # 96 tiles of 32 rows
        threshold = search.thresholds(np.arange(n), depth)
        for budget in (1 << 30, 1 << 20):
            tracemalloc.start()
            for ids, lists in search.symmetric(depth, threshold, budget):
                yielded.append(ids)
                # Ties by smaller index, the query itself left out.
                expected = [np.delete(np.arange(41), i)[:40] if i < 41 else np.arange(40) for i in ids]
                assert np.array_equal(lists.indices[:, :40], expected)
            peaks[budget] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if budget == 1 << 30:
                assert np.array_equal(np.sort(np.concatenate(yielded)), np.arange(n))
                yielded.clear()
    rows = np.sort(search._block_row[np.concatenate(yielded)])
    assert 32 <= rows.size < n and np.array_equal(rows, np.arange(rows.size))  # a prefix of whole tiles
    # Unbounded: ~n² / 4 keys of 8 bytes wait at the peak (19 MB); within 1 MiB: that plus one tile row's.
    assert peaks[1 << 30] > 16 << 20 and peaks[1 << 20] < peaks[1 << 30] / 2


def test_kth_smallest_is_a_row_wise_selection() -> None:
    rng = np.random.default_rng(17)
    for width in (5, 100, 3000):  # below and above the width that takes the shortcut
        values = rng.normal(size=(50, width)).astype(np.float32)
        values[:10] = np.round(values[:10])  # ties
        values[10, :] = 1.0  # all equal
        values[11] = np.sort(values[11])  # sorted rows: the every-16th cut is then no fair sample
        rank = rng.integers(1, width + 1, size=50)
        rank[:3] = [1, width, max(1, width // 100)]
        expected = np.take_along_axis(np.sort(values, axis=1), rank[:, None] - 1, axis=1)[:, 0]
        assert np.array_equal(kth_smallest(values, rank), expected)


def test_sorted_by_row_is_a_sort() -> None:
    rng = np.random.default_rng(18)
    rows = rng.integers(0, 37, size=5000).astype(np.uint64)
    keys = (rows << np.uint64(40)) | rng.integers(0, 1 << 40, size=5000).astype(np.uint64)
    got, starts = sorted_by_row(keys, 40, 40)  # rows 37 to 39 are empty
    assert np.array_equal(got, np.sort(keys))
    assert np.array_equal(starts, np.searchsorted(np.sort(keys), np.arange(41, dtype=np.uint64) << np.uint64(40)))
