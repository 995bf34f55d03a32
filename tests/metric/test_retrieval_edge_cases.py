"""Retrieval metrics on tiny inputs against loop references and pytorch-metric-learning: lone queries (R = 0),
separate vs shared query/reference sets, ties, cosine vs Euclidean, bad inputs."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from metric.retrieval import average_precision_at_r, kmeans_assign, kmeans_nmi, knn, recall_hits, retrieval_metrics
from tests.reference import retrieval as ref


def ap_at_r_loop(same: list[bool], r: int) -> float:
    correct, total = 0, 0.0
    for rank in range(1, r + 1):
        if same[rank - 1]:
            correct += 1
            total += correct / rank
    return total / r


def test_average_precision_at_r_matches_the_loop_and_pml() -> None:
    accuracy_calculator = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    g = np.random.default_rng(0)
    relevant = g.integers(1, 7, 50)
    matches = g.random((50, 8)) < 0.4
    ours = average_precision_at_r(matches, relevant)
    assert ours.tolist() == pytest.approx([ap_at_r_loop(m.tolist(), r) for m, r in zip(matches, relevant)], abs=1e-15)
    # PML: query i of label i, a neighbour's label i where it matches; class i has R + 1 samples (the query's own).
    labels = torch.arange(50)
    knn_labels = torch.where(torch.from_numpy(matches), labels[:, None], -1)
    pml = accuracy_calculator.mean_average_precision(
        knn_labels, labels, True, (labels, torch.from_numpy(relevant) + 1), False, True, lambda q, k: q[:, None] == k,
        at_r=True,
    )
    assert ours.tolist() == pytest.approx(pml, abs=1e-15)  # per class: here per query


def test_average_precision_at_r_refuses_lone_queries_and_short_lists() -> None:
    """R = 0 gave NaN (0 / 0, with a numpy warning); k < R silently counted the neighbours past k as misses."""
    with pytest.raises(ValueError, match=r"R >= 1 relevant samples \(leave lone queries out\), got R = 0"):
        average_precision_at_r(np.ones((2, 3), bool), np.array([2, 0]))
    with pytest.raises(ValueError, match="matches hold 2 neighbours per query, fewer than the largest R = 3"):
        average_precision_at_r(np.ones((1, 2), bool), np.array([3]))
    assert average_precision_at_r(np.ones((0, 0), bool), np.zeros(0, np.int64)).shape == (0,)


def test_recall_hits_with_k_beyond_the_list_use_what_there_is() -> None:
    matches = np.array([[False, False, True], [False, False, False]])
    assert recall_hits(matches, [2, 3, 100]).tolist() == [[False, True, True], [False, False, False]]


def test_lone_queries_are_left_out_like_pml() -> None:
    """Four lone queries among twelve: R@1 and MAP@R over the eight others (PML's rule), NMI over all twelve."""
    accuracy_calculator = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 6, 6])
    pml = accuracy_calculator.AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "NMI"), k="max_bin_count", device=torch.device("cpu")
    ).get_accuracy(x, y)
    ours = retrieval_metrics(x, y)
    assert ours["R@1"] == pytest.approx(pml["precision_at_1"], abs=1e-12)
    assert ours["MAP@R"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-12)
    assert ours["NMI"] == pytest.approx(pml["NMI"], abs=1e-12)
    expected = ref.retrieval(x.tolist(), y.tolist(), (1, 2, 4, 8))
    assert {key: ours[key] for key in expected} == pytest.approx(expected, abs=1e-12)


def test_separate_references_keep_the_query_and_match_pml() -> None:
    inference = pytest.importorskip("pytorch_metric_learning.utils.inference")
    g = torch.Generator().manual_seed(2)
    queries, references = torch.randn(15, 5, generator=g), torch.randn(40, 5, generator=g)
    references[7] = queries[3]  # an exact copy of a query among separate references: found at distance 0
    d, i = knn(queries, references, k=6)
    pml_d, pml_i = inference.FaissKNN()(queries, 6, references, ref_includes_query=False)
    assert torch.equal(i, pml_i) and torch.equal(d, pml_d)
    assert i[3, 0] == 7 and d[3, 0] == 0
    assert i.tolist() == ref.knn(queries.tolist(), references.tolist(), 6)[1]
    # The same set passed as references is searched as any other set: each query finds itself first.
    _, with_self = knn(queries, queries.clone(), k=1)
    assert with_self[:, 0].tolist() == list(range(15))


def test_exclude_self_refuses_queries_that_are_not_the_first_references() -> None:
    """Was: query i's neighbour i dropped silently though it was another sample (PML refuses this too)."""
    g = torch.Generator().manual_seed(3)
    references = torch.randn(10, 3, generator=g)
    queries = references[:5].clone()
    queries[2] += 1
    with pytest.raises(ValueError, match=r"first Q references, but query 2 differs from reference 2 \(1 of 5"):
        knn(queries, references, k=2, exclude_self=True)
    _, i = knn(references[:5], references, k=2, exclude_self=True)
    assert i.tolist() == [row[:2] for row in ref.knn(references.tolist(), None, 9)[1][:5]]


def float32_reference(x: np.ndarray, y: np.ndarray, ks: tuple, metric: str) -> dict[str, float]:
    """R@K and MAP@R by loops over each query's ranking by faiss's float32 scores, ties by smaller index."""
    n = len(y)
    scores, indices = knn(x, None, k=n - 1, metric=metric)
    counts = Counter(y.tolist())
    hits, ap_total, queries = {k: 0 for k in ks}, 0.0, 0
    for q in range(n):
        r = counts[y[q]] - 1
        if r == 0:
            continue
        queries += 1
        pairs = sorted(zip(scores[q].tolist(), indices[q].tolist()),
                       key=lambda p: (p[0] if metric == "l2" else -p[0], p[1]))
        same = [y[j] == y[q] for _, j in pairs]
        for k in ks:
            hits[k] += any(same[:k])
        ap_total += ap_at_r_loop(same, r)
    return {**{f"R@{k}": hits[k] / queries for k in ks}, "MAP@R": ap_total / queries}


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
def test_ties_rank_by_smaller_index_for_every_metric(metric: str) -> None:
    """Rows from {-1, 0, 1}³ (duplicates, opposite and scaled rows: exact float32 ties for all three metrics).
    With ties the metrics depend on the order of the samples, as documented (smaller index first); that includes
    cosine and inner products, where faiss itself puts the larger index first."""
    g = np.random.default_rng(4)
    x = g.integers(-1, 2, (60, 3)).astype(np.float32)
    x[~x.any(axis=1)] = 1  # no zero rows (cosine leaves them at 0 from everything)
    y = g.integers(0, 8, 60)
    ks = (1, 2, 3, 100)
    expected = float32_reference(x, y, ks, metric)
    for budgets in ({}, {"candidate_budget": 0, "chunk_budget": 60}):
        got = retrieval_metrics(x, y, ks=ks, metric=metric, with_nmi=False, **budgets)
        assert got == pytest.approx(expected, abs=1e-12)
    # Reversing the order of the samples changes which tied neighbour comes first, and here R@1.
    flipped = retrieval_metrics(x[::-1].copy(), y[::-1].copy(), ks=ks, metric=metric, with_nmi=False)
    assert flipped["R@1"] != got["R@1"]


def test_cosine_matches_pml_on_normalised_embeddings_and_equals_euclidean_there() -> None:
    accuracy_calculator = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    inference = pytest.importorskip("pytorch_metric_learning.utils.inference")
    import faiss

    g = torch.Generator().manual_seed(5)
    y = torch.randint(0, 8, (300,), generator=g)
    x = torch.randn(8, 16, generator=g)[y] + torch.randn(300, 16, generator=g)
    unit = torch.nn.functional.normalize(x, dim=1)
    calculator = accuracy_calculator.AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=inference.FaissKNN(index_init_fn=faiss.IndexFlatIP),
    )
    pml = calculator.get_accuracy(unit, y)
    cosine = retrieval_metrics(x * 3, y, metric="cosine", with_nmi=False)  # cosine ignores the scale
    assert cosine["R@1"] == pytest.approx(pml["precision_at_1"], abs=1e-12)
    assert cosine["MAP@R"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-12)
    # On unit rows ‖q − x‖² = 2 − 2 cos: the same rankings.
    assert retrieval_metrics(unit, y, with_nmi=False) == pytest.approx(cosine, abs=1e-12)
    expected = ref.retrieval(x.tolist(), y.tolist(), (1, 2, 4, 8), "cosine")
    assert cosine == pytest.approx(expected, abs=1e-12)


def test_nan_embeddings_are_refused_everywhere() -> None:
    """kmeans_assign gave faiss's C++ error "Error: '!(std::isfinite(x[i]))' failed" instead of naming the input."""
    x = np.random.default_rng(6).standard_normal((12, 3)).astype(np.float32)
    x[4, 1] = np.nan
    y = np.arange(12) % 3
    with pytest.raises(ValueError, match=r"embeddings holds 1 NaN/Inf value\(s\)"):
        kmeans_assign(x, 3)
    with pytest.raises(ValueError, match="embeddings holds 1 NaN"):
        kmeans_nmi(x, y)
    with pytest.raises(ValueError, match="embeddings holds 1 NaN"):
        retrieval_metrics(x, y)
    with pytest.raises(ValueError, match="references holds 1 NaN"):
        knn(np.zeros((2, 3), np.float32), x, k=1)


def test_kmeans_assign_checks_its_embeddings() -> None:
    """A 1-D array gave "not enough values to unpack"; a torch tensor or float64 array is clustered as float32."""
    x = np.random.default_rng(7).standard_normal((20, 3))
    with pytest.raises(ValueError, match="embeddings must have shape"):
        kmeans_assign(x[:, 0], 2)
    clusters = kmeans_assign(x.astype(np.float32), 3)
    assert np.array_equal(kmeans_assign(x, 3), clusters)
    assert np.array_equal(kmeans_assign(torch.from_numpy(x), 3), clusters)
    with pytest.raises(ValueError, match=r"num_clusters must be in \[1, 20\]"):
        kmeans_assign(x, 21)


def test_every_query_lone_is_nan_and_a_single_pair_is_perfect() -> None:
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    result = retrieval_metrics(x, torch.tensor([0, 0, 1]), ks=(1, 5), with_nmi=False)
    assert result == {"R@1": 1.0, "R@5": 1.0, "MAP@R": 1.0}
    assert all(math.isnan(v) for v in retrieval_metrics(x, torch.arange(3), with_nmi=False).values())


@pytest.mark.parametrize("with_nmi", [False, True])
def test_empty_embeddings_are_refused_naming_them(with_nmi: bool) -> None:
    # Without NMI an empty evaluation set (e.g. a split that matched no file) gave NaN metrics instead of an error.
    with pytest.raises(ValueError, match="embeddings is empty"):
        retrieval_metrics(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), with_nmi=with_nmi)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_labels_beyond_0_to_c_and_any_float_dtype_give_the_reference_metrics(dtype: torch.dtype) -> None:
    # Negative, huge (beyond float64's integers: 2⁶² + 1 and 2⁶² must stay apart) and non-contiguous class ids, on a
    # small integer grid (exact ties in every dtype), with a lone query and a class of two.
    g = torch.Generator().manual_seed(5)
    x = torch.randint(-2, 3, (40, 3), generator=g).to(dtype)
    ids = torch.tensor([-(2**62), -7, 2**62, 2**62 + 1, 10**12])
    y = ids[torch.randint(0, 3, (40,), generator=g)]
    y[0], y[1:3] = ids[3], ids[4]
    expected = ref.retrieval(x.double().tolist(), y.tolist(), (1, 2, 4, 8), "l2")
    got = retrieval_metrics(x, y, with_nmi=False)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got == retrieval_metrics(x.float(), torch.unique(y, return_inverse=True)[1], with_nmi=False)


def test_recall_hits_without_neighbours_are_misses() -> None:
    """An (N, 0) matches array (no neighbour listed, e.g. a set of one sample) raised numpy's "attempt to get argmax
    of an empty sequence"; now no query has a hit, as with K beyond a short list."""
    assert recall_hits(np.zeros((3, 0), bool), [1, 4]).tolist() == [[False, False]] * 3
    assert recall_hits(np.zeros((0, 0), bool), [1]).shape == (0, 1)
    assert recall_hits(np.zeros((0, 5), bool), [2, 1]).shape == (0, 2)


def test_recall_hits_refuses_what_retrieval_metrics_refuses() -> None:
    """K = 0, 2.5 or True and non-bool or 1-D matches silently gave hits (none, at K = 3, at K = 1, argmax of
    labels) or numpy's AxisError."""
    matches = np.array([[False, True], [True, False]])
    assert recall_hits(matches, [2, 1]).tolist() == [[True, False], [True, True]]  # order of ks kept
    for ks in ([0], [2.5], [True], []):
        with pytest.raises(ValueError, match=r"ks must be positive integers \(at most 2\^62\), got"):
            recall_hits(matches, ks)
    with pytest.raises(ValueError, match=r"matches must be a \(Q, k\) bool array, got shape \(2, 2\) \(int64\)"):
        recall_hits(matches.astype(np.int64), [1])
    with pytest.raises(ValueError, match=r"matches must be a \(Q, k\) bool array, got shape \(2,\) \(bool\)"):
        recall_hits(matches[0], [1])
