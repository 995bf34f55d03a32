"""k-means on one chosen GPU, like the neighbour searches (faiss's GPU API faked: there is no GPU here)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metric.retrieval import kmeans_assign, kmeans_nmi, normalized_mutual_info
from metric.retrieval import nmi as nmi_module


@pytest.fixture
def gpu_calls(monkeypatch: pytest.MonkeyPatch) -> list:
    """Fakes a faiss with two GPUs whose GPU indexes are the CPU ones; records ``("one", device)`` per copy to a
    single GPU and ``("all", ngpu)`` per copy to every GPU."""
    import faiss
    import faiss.extra_wrappers

    calls: list = []

    def to_gpu(resources: object, device: int, index: faiss.Index) -> faiss.Index:
        calls.append(("one", device))
        return index

    def to_all_gpus(index: faiss.Index, co: object = None, ngpu: int = -1) -> faiss.Index:
        calls.append(("all", ngpu))
        return index

    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", to_all_gpus, raising=False)
    monkeypatch.setattr(faiss.extra_wrappers, "get_num_gpus", lambda: 2)  # what faiss.Kmeans(gpu=True) asks
    return calls


def points() -> np.ndarray:
    g = np.random.default_rng(0)
    return (np.repeat(np.eye(4, 6) * 5, 10, axis=0) + g.standard_normal((40, 6))).astype(np.float32)


def test_kmeans_runs_on_the_requested_gpu_only(gpu_calls: list) -> None:
    """Was faiss.Kmeans(gpu=...): every GPU (under torchrun each process took all of them)."""
    x = points()
    on_cpu = kmeans_assign(x, 4)
    assert gpu_calls == []
    assert np.array_equal(kmeans_assign(x, 4, gpu=1), on_cpu)
    assert gpu_calls == [("one", 1)]


def test_kmeans_nmi_clusters_on_the_embeddings_gpu(gpu_calls: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nmi_module, "gpu_device", lambda x: 1)  # as for embeddings on cuda:1
    x, y = points(), np.repeat(np.arange(4), 10)
    assert kmeans_nmi(torch.from_numpy(x), torch.from_numpy(y)) == normalized_mutual_info(y, kmeans_assign(x, 4))
    assert gpu_calls == [("one", 1)]


def test_gpu_flag_is_refused() -> None:
    with pytest.raises(TypeError, match="CUDA device index or None, got True"):
        kmeans_assign(points(), 4, gpu=True)
