"""Exact kNN on faiss against a brute-force reference, PML's FaissKNN, ties, self-exclusion and chunking."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from metric.retrieval import knn
from metric.retrieval.knn import ExactIndex
from tests.helpers import assert_close
from tests.reference import retrieval as ref


@pytest.mark.parametrize("metric", ["l2", "cosine", "ip"])
@pytest.mark.parametrize("separate_references", [False, True])
def test_matches_reference(metric: str, separate_references: bool) -> None:
    x = torch.randn(25, 6)
    references = torch.randn(31, 6) if separate_references else None
    distances, indices = knn(x, references, k=5, metric=metric)
    expected_d, expected_i = ref.knn(x.tolist(), None if references is None else references.tolist(), 5, metric)
    assert indices.tolist() == expected_i
    assert_close(distances, torch.tensor(expected_d), rtol=1e-4, atol=1e-5)


def test_ties_are_broken_by_smaller_index() -> None:
    # Integer points on a tiny grid: many exact ties, distances exact in float32.
    x = torch.randint(0, 2, (40, 2)).float()
    _, indices = knn(x, None, k=12)
    assert indices.tolist() == ref.knn(x.tolist(), None, 12)[1]


@pytest.mark.parametrize("metric, order", [("l2", [1, 2, 3, 4]), ("cosine", [4, 3, 2, 1]), ("ip", [4, 3, 2, 1])])
def test_tied_similarities_come_in_faiss_order(metric: str, order: list) -> None:
    _, indices = knn(torch.ones(5, 2), None, k=4, metric=metric)  # as knn's docstring states
    assert indices[0].tolist() == order


def test_self_is_excluded_by_index_not_by_distance() -> None:
    x = torch.zeros(6, 3)  # all duplicates of each other
    _, indices = knn(x, None, k=3)
    assert indices[0].tolist() == [1, 2, 3]
    assert indices[4].tolist() == [0, 1, 2]
    # Row 5's own index is not among its 3 searched neighbours: the last is dropped (PML's rule).
    assert indices[5].tolist() == [0, 1, 2]
    # Without exclusion the query finds itself (tied at distance 0, first by index).
    _, with_self = knn(x, x, k=1, exclude_self=False)
    assert with_self[:, 0].tolist() == [0, 0, 0, 0, 0, 0]


def test_exclude_self_with_queries_first_in_references() -> None:
    references = torch.randn(20, 4)
    queries = references[:7]
    _, indices = knn(queries, references, k=4, exclude_self=True)
    expected = [row[:4] for row in ref.knn(references.tolist(), None, 19)[1][:7]]
    assert indices.tolist() == expected


def test_chunking_does_not_change_results() -> None:
    x = torch.randn(57, 8)
    full_d, full_i = knn(x, None, k=6, chunk_size=1000)
    for chunk_size in (1, 5, 20):
        d, i = knn(x, None, k=6, chunk_size=chunk_size)
        assert torch.equal(i, full_i)
        assert_close(d, full_d)


def test_numpy_in_numpy_out_and_torch_in_torch_out() -> None:
    x = np.random.default_rng(0).normal(size=(10, 3))
    d, i = knn(x, None, k=2)
    assert isinstance(d, np.ndarray) and d.dtype == np.float32 and i.dtype == np.int64 and d.shape == (10, 2)
    d_t, i_t = knn(torch.from_numpy(x), None, k=2)
    assert isinstance(d_t, torch.Tensor) and i_t.dtype == torch.int64
    assert np.array_equal(i_t.numpy(), i)


def test_device_of_results(device: torch.device) -> None:
    x = torch.randn(30, 4, device=device)
    distances, indices = knn(x, None, k=3)
    assert distances.device.type == device.type and indices.device.type == device.type
    assert indices.cpu().tolist() == ref.knn(x.cpu().tolist(), None, 3)[1]


def test_matches_pml_faiss_knn() -> None:
    inference = pytest.importorskip("pytorch_metric_learning.utils.inference")
    x = torch.randn(200, 16)
    x[10] = x[3]  # an exact duplicate
    pml_d, pml_i = inference.FaissKNN()(x, 7, x, ref_includes_query=True)
    d, i = knn(x, None, k=7)
    assert torch.equal(i, pml_i)
    assert torch.equal(d, pml_d)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"k": 10}, ValueError, r"k must be in \[1, 9\]"),
        ({"k": 0}, ValueError, "k must be"),
        ({"k": 1, "metric": "manhattan"}, ValueError, "metric must be one of"),
        ({"k": 1, "chunk_size": 0}, ValueError, "chunk_size"),
        ({"k": 1, "references": torch.randn(4, 5)}, ValueError, "same embedding size"),
        ({"k": 1, "references": torch.randn(3, 3), "exclude_self": True}, ValueError, "first Q references"),
    ],
)
def test_invalid_arguments(kwargs: dict, error: type, match: str) -> None:
    kwargs = {"references": None, **kwargs}
    with pytest.raises(error, match=match):
        knn(torch.randn(10, 3), **kwargs)


def test_invalid_embeddings() -> None:
    with pytest.raises(ValueError, match="queries must have shape"):
        knn(torch.randn(10), None, k=1)
    with pytest.raises(ValueError, match="NaN"):
        knn(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), None, k=1)
    with pytest.raises(TypeError, match="floating-point"):
        knn(torch.ones(4, 2, dtype=torch.long), None, k=1)
    with pytest.raises(TypeError, match="torch.Tensor or a numpy array"):
        knn([[0.0, 1.0]], None, k=1)


def test_missing_faiss_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        knn(torch.randn(5, 2), None, k=1)


def test_gpu_copy_goes_to_the_requested_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Embeddings on cuda:1 are searched on GPU 1, not GPU 0 (faiss's GPU API faked: no GPU here)."""
    import faiss

    devices: list[int] = []

    def to_gpu(resources: object, device: int, index: faiss.Index) -> faiss.Index:
        devices.append(device)
        return index

    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    references = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    _, indices = ExactIndex(references, gpu=1).search(references, 2, self_ids=np.arange(6))
    assert devices == [1]
    assert_close(torch.from_numpy(indices), knn(references, None, 2)[1])


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_samples_say_there_is_no_neighbour(n: int) -> None:
    with pytest.raises(ValueError, match=f"no neighbour to search for: {n} references, self excluded"):
        knn(torch.randn(n, 3), None, k=1)
