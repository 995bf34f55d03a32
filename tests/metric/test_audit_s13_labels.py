"""Audit s13 of metric/: the retrieval metrics, k-means NMI and smart mining take class ids as the samplers do (a
tensor, numpy array, list or tuple), refuse ids that are no integers by name, and read reversed numpy views."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metric.miners import SmartMiner
from metric.retrieval import kmeans_nmi, retrieval_metrics
from metric.samplers import PKBatchSampler, SmartMiningBatchSampler
from tests.reference import retrieval as ref

LABELS = [0, 2, 1, 0, 2, 1, 1, 0, 2, 0, 5, 5]


def embeddings() -> torch.Tensor:
    return torch.randn(len(LABELS), 4, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("container", [list, tuple, np.array, torch.tensor], ids=["list", "tuple", "numpy", "tensor"])
def test_retrieval_metrics_take_integer_labels_in_any_container(container) -> None:
    x = embeddings()
    result = retrieval_metrics(x, container(LABELS))
    expected = ref.retrieval(x.tolist(), LABELS, (1, 2, 4, 8))
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-9), key
    assert result["NMI"] == kmeans_nmi(x, torch.tensor(LABELS)) == kmeans_nmi(x, container(LABELS))


@pytest.mark.parametrize("labels,problem", [([0.0, 1.0] * 6, "float"), (["cat", "dog"] * 6, "str"),
                                            ([[0, 1]] * 12, "shape")])
def test_retrieval_metrics_refuse_labels_that_are_no_class_ids_by_name(labels, problem) -> None:
    error = ValueError if problem == "shape" else TypeError
    with pytest.raises(error, match="labels"):
        retrieval_metrics(embeddings(), labels)
    with pytest.raises(error, match="labels"):
        kmeans_nmi(embeddings(), labels)


def test_smart_miner_takes_list_labels() -> None:
    x = embeddings()
    from_list, from_tensor = SmartMiner(num_neighbours=4, index="flat"), SmartMiner(num_neighbours=4, index="flat")
    from_list.update(x, LABELS)
    from_tensor.update(x, torch.tensor(LABELS))
    batch = torch.arange(len(LABELS))
    assert all(torch.equal(a, b) for a, b in zip(from_list.mine(batch), from_tensor.mine(batch)))


def test_reversed_numpy_views_are_read_not_refused() -> None:
    """torch cannot wrap an array of negative strides: ``labels[::-1]`` raised a ValueError saying so (and as_class_ids
    turned it into "labels must be integer class ids")."""
    x, labels = embeddings().numpy(), np.array(LABELS)
    expected = retrieval_metrics(x[::-1].copy(), labels[::-1].copy(), with_nmi=False)
    assert retrieval_metrics(x[::-1], labels[::-1], with_nmi=False) == expected
    reversed_labels = labels[::-1]
    sampler = PKBatchSampler(reversed_labels, 2, 2, seed=1)
    assert list(sampler) == list(PKBatchSampler(reversed_labels.copy(), 2, 2, seed=1))


def test_smart_mining_sampler_takes_a_reversed_numpy_view_of_labels() -> None:
    """It counted the labels with torch.as_tensor, which cannot wrap a negative-stride array (a ValueError)."""
    labels = np.array(LABELS)[::-1]
    miner = SmartMiner(num_neighbours=4, index="flat")
    miner.update(embeddings(), labels)
    batches = list(SmartMiningBatchSampler(miner, labels, 4, seed=2))
    assert batches == list(SmartMiningBatchSampler(miner, labels.copy(), 4, seed=2)) and len(batches) == 3
