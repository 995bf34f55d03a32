"""Recall@K, MAP@R and NMI against naive references, scikit-learn and pytorch-metric-learning's AccuracyCalculator."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metric.retrieval import (
    average_precision_at_r,
    kmeans_assign,
    kmeans_nmi,
    knn,
    normalized_mutual_info,
    recall_hits,
    retrieval_metrics,
)
from metric.retrieval.block_search import BlockSearch
from tests.reference import retrieval as ref


def clustered(n: int, dim: int, classes: int, spread: float = 1.0, generator_seed: int = 0):
    g = torch.Generator().manual_seed(generator_seed)
    centres = torch.randn(classes, dim, generator=g) * 2
    labels = torch.randint(0, classes, (n,), generator=g)
    return centres[labels] + spread * torch.randn(n, dim, generator=g), labels


@pytest.fixture
def search_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """Records (query rows, depth, references) of every chunk of the streaming search by chunks of queries."""
    calls: list[tuple[int, int, int]] = []
    nearest = BlockSearch.nearest

    def spy(self, ids, depth, threshold=None):
        calls.append((ids.size, int(depth.max()), self.size))
        return nearest(self, ids, depth, threshold)

    monkeypatch.setattr(BlockSearch, "nearest", spy)
    return calls


@pytest.fixture
def symmetric_depths(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Records the depths of every symmetric pass."""
    calls: list[np.ndarray] = []
    symmetric = BlockSearch.symmetric

    def spy(self, depth, threshold, budget):
        calls.append(depth)
        return symmetric(self, depth, threshold, budget)

    monkeypatch.setattr(BlockSearch, "symmetric", spy)
    return calls


def test_recall_hits_and_average_precision_by_hand() -> None:
    matches = np.array([[True, False, True], [False, False, True], [False, False, False]])
    assert recall_hits(matches, [1, 2, 3, 8]).tolist() == [
        [True, True, True, True],
        [False, False, True, True],
        [False, False, False, False],
    ]
    relevant = np.array([2, 3, 1])
    # Query 0: hit at rank 1 (P=1), rank 3 is past R=2. Query 1: hit at rank 3 (P=1/3). Query 2: none.
    assert np.allclose(average_precision_at_r(matches, relevant), [0.5, 1 / 9, 0.0])


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_matches_reference(metric: str) -> None:
    x, y = clustered(40, 4, 5, spread=2.0)
    y[7] = 99  # a class with a single sample: a lone query, left out
    got = retrieval_metrics(x, y, metric=metric, with_nmi=False)
    expected = ref.retrieval(x.tolist(), y.tolist(), (1, 2, 4, 8), metric)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key


def test_streaming_chunks_respect_the_budget_and_do_not_change_results(search_calls: list) -> None:
    x, y = clustered(300, 8, 4, spread=2.0)
    whole = retrieval_metrics(x, y, with_nmi=False)
    budget = 300 * 11
    search_calls.clear()
    streamed = retrieval_metrics(x, y, with_nmi=False, chunk_budget=budget, candidate_budget=0)
    assert streamed == pytest.approx(whole, abs=1e-12)
    assert len(search_calls) > 10
    assert all(rows * references <= budget for rows, _, references in search_calls)
    assert sum(rows for rows, _, _ in search_calls) == 300
    # Each chunk sorts as deep as its deepest query's R + 1 (here: the class size), not max R overall.
    assert {k for _, k, _ in search_calls} == {int(c) for c in torch.bincount(y)}


def test_recall_only_sorts_max_k_neighbours_and_one_more(search_calls: list, symmetric_depths: list) -> None:
    x, y = clustered(100, 4, 3)
    result = retrieval_metrics(x, y, ks=(1, 5), with_map_at_r=False, with_nmi=False, candidate_budget=0)
    assert set(result) == {"R@1", "R@5"} and {k for _, k, _ in search_calls} == {6}
    assert retrieval_metrics(x, y, ks=(1, 5), with_map_at_r=False, with_nmi=False) == result
    assert len(symmetric_depths) == 1 and set(symmetric_depths[0].tolist()) == {6}


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_symmetric_pass_then_chunks_for_the_queries_it_leaves_out(
    metric: str, search_calls: list, symmetric_depths: list
) -> None:
    # 3,000 × 32 in 30 classes (R ≈ 100): ~300 candidates per query (small depths take a wide margin), 7 MB in all.
    x, y = clustered(3000, 32, 30, spread=2.5)
    y[:2] = 1000  # a class of two (R = 1)
    y[2] = 1001  # a lone query
    chunked = retrieval_metrics(x, y, metric=metric, with_nmi=False, candidate_budget=0)
    assert not symmetric_depths and sum(rows for rows, _, _ in search_calls) == 2999
    search_calls.clear()
    symmetric = retrieval_metrics(x, y, metric=metric, with_nmi=False)
    assert len(symmetric_depths) == 1 and not search_calls
    assert symmetric == pytest.approx(chunked, abs=1e-12) and symmetric["R@1"] == chunked["R@1"]
    # Within 64 KiB the symmetric pass leaves the last tiles out: chunks search their queries.
    mixed = retrieval_metrics(x, y, metric=metric, with_nmi=False, candidate_budget=1 << 16)
    assert len(symmetric_depths) == 2 and 0 < sum(rows for rows, _, _ in search_calls) < 2999
    assert mixed == pytest.approx(chunked, abs=1e-12) and mixed["R@1"] == chunked["R@1"]


def test_matches_pml_accuracy_calculator() -> None:
    accuracy_calculator = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    x, y = clustered(600, 16, 12, spread=1.5)
    y[5] = 1000  # a lone query: PML leaves it out of precision_at_1 and MAP@R, and so do we
    calculator = accuracy_calculator.AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "NMI"), k="max_bin_count", device=torch.device("cpu")
    )
    pml = calculator.get_accuracy(x, y)
    ours = retrieval_metrics(x, y)
    assert ours["R@1"] == pml["precision_at_1"]
    assert ours["MAP@R"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-12)
    # Same faiss k-means settings (niter=20, seed 1234) on the same float32 data: the same clusters.
    assert ours["NMI"] == pytest.approx(pml["NMI"], abs=1e-9)


def test_matches_pml_where_faiss_searches_by_matrix_products() -> None:
    """1,100 × 128: faiss (inside PML) computes distances by matrix products, as our blocks do: identical lists."""
    accuracy_calculator = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    x, y = clustered(1100, 128, 25, spread=1.5)
    calculator = accuracy_calculator.AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count", device=torch.device("cpu")
    )
    pml = calculator.get_accuracy(x, y)
    ours = retrieval_metrics(x, y, ks=(1,), with_nmi=False, chunk_budget=1100 * 150)
    assert ours["R@1"] == pml["precision_at_1"]
    assert ours["MAP@R"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-12)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_ties_tiny_classes_and_chunk_boundaries_match_the_reference(metric: str) -> None:
    # Points on a small integer grid: exact ties and duplicates everywhere (exact in float32), so only the
    # tie-breaking (smaller index first, the query left out by index) decides R@K and MAP@R.
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, (80, 3), generator=g).float()
    y = torch.randint(0, 5, (80,), generator=g)
    y[0], y[1:3] = 50, 51  # a lone query and a class of two (R = 1)
    expected = ref.retrieval(x.tolist(), y.tolist(), (1, 2, 4, 8), metric)
    for budget in (80, 80 * 7, 80 * 80):  # one query per chunk, chunks of mixed depths, a single chunk
        got = retrieval_metrics(x, y, metric=metric, with_nmi=False, chunk_budget=budget)
        assert got == pytest.approx(expected, abs=1e-12), budget


def test_nmi_matches_sklearn_and_reference() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for n, a, b in [(50, 3, 4), (200, 10, 10), (30, 1, 5), (30, 5, 1), (30, 1, 1)]:
        u, v = rng.integers(0, a, n) * 7 - 3, rng.integers(0, b, n)
        expected = metrics.normalized_mutual_info_score(u, v)
        assert normalized_mutual_info(u, v) == pytest.approx(expected, abs=1e-12)
        assert ref.nmi(u.tolist(), v.tolist()) == pytest.approx(expected, abs=1e-12)


def test_nmi_of_a_relabelled_partition_is_one() -> None:
    u = np.array([0, 0, 1, 1, 2, 2, 2])
    assert normalized_mutual_info(u, 5 - u) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same length"):
        normalized_mutual_info(u, u[:-1])


@pytest.mark.parametrize("classes, per_class", [(5, 2), (10, 1), (22, 4), (25, 4)])
def test_nmi_of_equal_labelings_is_never_above_one(classes: int, per_class: int) -> None:
    # was 1.0000000000000002 for these (summary.json showed NMI 100.00000000000003)
    labels = np.repeat(np.arange(classes), per_class)
    assert 1.0 - 1e-15 <= normalized_mutual_info(labels, labels) <= 1.0


def test_kmeans_nmi_on_the_same_assignment_as_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    x, y = clustered(400, 8, 6, spread=2.5)
    clusters = kmeans_assign(x.numpy(), 6)
    assert kmeans_nmi(x, y) == pytest.approx(metrics.normalized_mutual_info_score(y.numpy(), clusters), abs=1e-12)
    assert 0.0 < kmeans_nmi(x, y) < 1.0
    assert np.array_equal(kmeans_assign(x.numpy(), 6), clusters)  # seeded: deterministic


def test_well_separated_classes_score_one() -> None:
    x, y = clustered(120, 8, 4, spread=0.01)
    assert retrieval_metrics(x, y) == pytest.approx({"R@1": 1, "R@2": 1, "R@4": 1, "R@8": 1, "MAP@R": 1, "NMI": 1})


def test_all_one_class() -> None:
    x = torch.randn(20, 3)
    result = retrieval_metrics(x, torch.zeros(20, dtype=torch.long))
    assert result == pytest.approx({"R@1": 1, "R@2": 1, "R@4": 1, "R@8": 1, "MAP@R": 1, "NMI": 1})


def test_every_query_lone_gives_nan_like_pml() -> None:
    x = torch.randn(6, 3)
    result = retrieval_metrics(x, torch.arange(6))
    assert all(math.isnan(result[key]) for key in ("R@1", "R@8", "MAP@R"))
    assert result["NMI"] == pytest.approx(1.0)  # k = N clusters: every sample alone, as every class


def test_numpy_inputs_and_k_larger_than_references() -> None:
    x, y = clustered(6, 3, 2, spread=0.01)
    result = retrieval_metrics(x.numpy(), y.numpy(), ks=(1, 100), with_nmi=False)
    assert result == pytest.approx({"R@1": 1.0, "R@100": 1.0, "MAP@R": 1.0})


def test_invalid_inputs() -> None:
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="same length"):
        retrieval_metrics(x, torch.zeros(9, dtype=torch.long))
    with pytest.raises(TypeError, match="integers"):
        retrieval_metrics(x, torch.zeros(10))
    for ks in [(0, 1), (1, 2.5), (True,), (float("nan"),), (float("inf"),), (2**63,), ("2",), ()]:
        with pytest.raises(ValueError, match="ks must be positive integers"):  # 2.5 was R@2, True R@1, 2^63 overflowed
            retrieval_metrics(x, torch.zeros(10, dtype=torch.long), ks=ks)
    with pytest.raises(TypeError, match=r"ks must be a sequence of positive integers, e.g. \(1, 2, 4, 8\), got 5"):
        retrieval_metrics(x, torch.zeros(10, dtype=torch.long), ks=5)  # was "'int' object is not iterable"
    assert list(retrieval_metrics(x, torch.arange(10) % 2, ks=(2.0, np.int64(1), 2), with_nmi=False)) == [
        "R@1", "R@2", "MAP@R"]
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(x.masked_fill(x > 1, float("inf")), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="metric must be"):
        retrieval_metrics(x, torch.zeros(10, dtype=torch.long), metric="l1")
    with pytest.raises(ValueError, match="chunk_budget"):
        retrieval_metrics(x, torch.zeros(10, dtype=torch.long), chunk_budget=1 << 31)
    with pytest.raises(ValueError, match="candidate_budget"):
        retrieval_metrics(x, torch.zeros(10, dtype=torch.long), candidate_budget=-1)
    with pytest.raises(ValueError, match=r"at least one dimension \(D >= 1\), got shape \(10, 0\)"):
        retrieval_metrics(torch.zeros(10, 0), torch.zeros(10, dtype=torch.long))  # was a ZeroDivisionError


@pytest.mark.parametrize("scale", [1e19, 1e39])
def test_embeddings_whose_float32_distances_would_overflow_are_refused(scale) -> None:
    # Finite embeddings (float64 for 1e39) whose float32 squares overflow gave an IndexError deep in the search, or,
    # cast to float32, infinite rows: faiss then returned neighbour -1 everywhere.
    x, y = torch.randn(20, 4, dtype=torch.float64) * scale, torch.arange(20) % 3
    with pytest.raises(ValueError, match="embeddings hold values up to .* float32 distances may overflow"):
        retrieval_metrics(x, y)
    with pytest.raises(ValueError, match="queries hold values up to"):
        knn(x, None, k=2)
    unit = x / scale
    assert retrieval_metrics(unit * 1e18, y, with_nmi=False) == retrieval_metrics(unit, y, with_nmi=False)  # still fine


@pytest.mark.slow
def test_large_query_set_streams_in_bounded_chunks(search_calls: list) -> None:
    """20,000 queries × 16, 20 classes (R ≈ 1,000), searched by chunks of queries: the 20,000² distances (4·10⁸)
    never exist at once, only blocks of at most 2²² (and the neighbour lists of one block).
    (Exact MAP@R costs N² distances: 200,000 queries take minutes on this 2-core machine, hence this size.)"""
    n, budget = 20_000, 1 << 22
    x, y = clustered(n, 16, 20, spread=0.05)
    result = retrieval_metrics(x, y, with_nmi=False, chunk_budget=budget, candidate_budget=0)
    assert result == pytest.approx({"R@1": 1, "R@2": 1, "R@4": 1, "R@8": 1, "MAP@R": 1})
    assert sum(rows for rows, _, _ in search_calls) == n
    assert len(search_calls) > 50
    assert max(rows * references for rows, _, references in search_calls) <= budget
    assert max(k for _, k, _ in search_calls) == int(torch.bincount(y).max())
