"""Audit s17 of metric/: retrieval metrics of embeddings far from the origin for their spread. The float32
expansion ‖q‖² + ‖x‖² − 2q·x of "l2" scores rounded off beyond the distances themselves there: MAP@R (whose depth
is not rechecked with faiss, unlike R@K) came out 0.015 where the exact value and pytorch-metric-learning's
(faiss sums (q − x)² pair by pair for small searches) are 0.119, and faiss's k-means (its expansion too) gave an
NMI of 0.02 for 0.96."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metric.retrieval import kmeans_assign, kmeans_nmi, retrieval_metrics
from metric.retrieval.faiss_backend import centred
from tests.reference import retrieval as ref


def offset_classes(n: int, dim: int, offset: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """12 overlapping classes of spread 0.01 around ``offset`` in every coordinate (float32)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 12, n)
    centres = rng.normal(size=(12, dim)) * 0.005
    return (offset + centres[labels] + rng.normal(size=(n, dim)) * 0.01).astype(np.float32), labels


def exact_metrics(x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """R@1 and MAP@R from float64 distances of the float32 rows (ties by smaller index), lone queries left out."""
    rows = torch.from_numpy(x).double()
    distances = torch.cdist(rows - rows.mean(0), rows - rows.mean(0))
    distances.fill_diagonal_(float("inf"))
    order = torch.argsort(distances, dim=1, stable=True).numpy()
    relevant = np.bincount(labels)[labels] - 1
    r1, ap = [], []
    for q in np.flatnonzero(relevant > 0):
        same = labels[order[q, : relevant[q]]] == labels[q]
        r1.append(same[0])
        ap.append(float((np.cumsum(same) / np.arange(1, same.size + 1) * same).sum() / relevant[q]))
    return {"R@1": float(np.mean(r1)), "MAP@R": float(np.mean(ap))}


@pytest.mark.parametrize("candidate_budget", [0, 1 << 30])  # chunks of queries; the symmetric pass
def test_map_at_r_far_from_the_origin_is_the_exact_one(candidate_budget: int) -> None:
    x, labels = offset_classes(600, 32, 100.0)  # offset 10⁴ × the spread
    expected = exact_metrics(x, labels)
    got = retrieval_metrics(x, labels, ks=(1,), with_nmi=False, candidate_budget=candidate_budget)
    assert got["R@1"] == expected["R@1"]
    assert got["MAP@R"] == pytest.approx(expected["MAP@R"], abs=1e-6)  # it was 0.015 for 0.119


def test_map_at_r_far_from_the_origin_is_pml_s_where_faiss_sums_pair_by_pair() -> None:
    accuracy_calculator = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    x, labels = offset_classes(600, 32, 100.0, seed=1)  # 600 × 32 < faiss's BLAS threshold: exact sums
    calculator = accuracy_calculator.AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"), device=torch.device("cpu"))
    pml = calculator.get_accuracy(torch.from_numpy(x), torch.from_numpy(labels))
    got = retrieval_metrics(x, labels, ks=(1,), with_nmi=False)
    assert got["R@1"] == pml["precision_at_1"]
    assert got["MAP@R"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)


def test_embeddings_around_the_origin_are_searched_as_given() -> None:
    # Their mean does not outweigh their spread: the very array goes on, so faiss's rounding (and PML's) is kept.
    x = np.random.default_rng(2).normal(size=(300, 16)).astype(np.float32) + 0.2
    assert centred(x) is x
    shifted = centred(x + np.float32(5.0))
    assert shifted is not x and shifted.dtype == np.float32 and shifted.flags.c_contiguous
    assert np.abs(shifted.mean(0)).max() < 1e-3
    empty = np.zeros((0, 16), np.float32)
    assert centred(empty) is empty  # no mean to take (numpy warns and gives NaN)


def test_integer_embeddings_far_from_the_origin_keep_their_exact_ties() -> None:
    # A small integer grid offset by 5000: the shift is the rounded mean, so distances stay exact integers and
    # equidistant neighbours rank by smaller index (a fractional shift would round them apart).
    g = torch.Generator().manual_seed(3)
    grid = torch.randint(0, 3, (60, 3), generator=g)
    labels = torch.randint(0, 4, (60,), generator=g)
    x = (grid + 5000).float().numpy()
    assert np.array_equal(centred(np.ascontiguousarray(x)) % 1, np.zeros_like(x))
    expected = ref.retrieval(grid.tolist(), labels.tolist(), (1, 2, 4, 8))
    for budget in (0, 1 << 30):
        got = retrieval_metrics(x, labels, with_nmi=False, candidate_budget=budget)
        assert got == pytest.approx(expected, abs=1e-12), budget


def test_kmeans_far_from_the_origin_clusters_as_centred() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 10, 1200)
    near = (rng.normal(size=(10, 128)) * 0.02)[labels] + rng.normal(size=(1200, 128)) * 0.01
    far = (near + 100).astype(np.float32)  # 1200 × 128: faiss assigns by matrix products, through the expansion
    assert np.array_equal(kmeans_assign(far, 10), kmeans_assign(centred(far), 10))
    assert kmeans_nmi(far, labels) == kmeans_nmi(centred(far), labels) > 0.9  # it was 0.02
