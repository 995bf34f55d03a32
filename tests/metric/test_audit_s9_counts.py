"""Neighbour search, k-means, smart mining, pixel sampling and class trees take numpy integers (``k`` from an array,
``np.argmax``, ...) as the ints they hold, where faiss and torch refused them with errors about their C prototypes,
and refuse sizes that are no whole number with an error naming the argument."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metric.class_tree import ClassTree
from metric.miners import SmartMiner, sample_pixels
from metric.retrieval import knn, retrieval_metrics
from metric.retrieval.kmeans import kmeans_assign

X = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
Y = np.arange(12) % 3
PIXELS = torch.randint(0, 3, (2, 5, 5), generator=torch.Generator().manual_seed(0))


def mined(miner: SmartMiner) -> list[list[int]]:
    miner.update(X, Y)
    return [t.tolist() for t in miner.mine(np.arange(6))]


def test_numpy_integers_act_as_their_ints():
    assert all(np.array_equal(a, b) for a, b in zip(knn(X, None, np.int64(3), chunk_size=np.int32(5)), knn(X, None, 3)))
    assert mined(SmartMiner(np.int64(3), "flat", seed=np.int64(4))) == mined(SmartMiner(3, "flat", seed=4))
    hnsw = SmartMiner(np.int64(3), "hnsw", hnsw_m=np.int64(4), ef_search=np.int64(8), ef_construction=np.int16(9))
    assert all(len(t) == 6 for t in mined(hnsw))
    assert np.array_equal(kmeans_assign(X, np.int64(3), niter=np.int64(5), seed=np.int64(7)),
                          kmeans_assign(X, 3, niter=5, seed=7))
    expected = retrieval_metrics(X, Y, ks=(1,), chunk_budget=64, candidate_budget=0, kmeans_seed=7)
    assert retrieval_metrics(X, Y, ks=(1,), chunk_budget=np.int64(64), candidate_budget=np.int64(0),
                             kmeans_seed=np.int64(7)) == expected
    assert retrieval_metrics(X, Y, ks=(1,), chunk_budget=64, candidate_budget=1e3, kmeans_seed=7) == expected


@pytest.mark.parametrize("call, match", [
    (lambda: knn(X, None, 2.0), r"k must be in \[1, 11\] .*got 2.0"),
    (lambda: knn(X, None, 2, chunk_size=2.5), "chunk_size must be an integer >= 1, got 2.5"),
    (lambda: SmartMiner(2.5), "num_neighbours must be an integer >= 1, got 2.5"),
    (lambda: SmartMiner(2, ef_search=10.5), "ef_search must be >= num_neighbours"),
    (lambda: SmartMiner(2, hnsw_m=8.0), "hnsw_m must be >= 2"),
    (lambda: sample_pixels(PIXELS, 2.5), "k_per_class must be an integer >= 1, got 2.5"),
    (lambda: sample_pixels(PIXELS, True), "k_per_class must be an integer >= 1, got True"),
    (lambda: sample_pixels(PIXELS, 2, "hard", boundary_width=1.5), "boundary_width must be an integer >= 1"),
    (lambda: kmeans_assign(X, 2, niter=2.5), "niter must be an integer >= 1, got 2.5"),
    (lambda: retrieval_metrics(X, Y, chunk_budget=1000.5), r"chunk_budget must be in \[1, 2\^31\), got 1000.5"),
    (lambda: ClassTree.build(torch.randn(4, 2), num_levels=2.5), "num_levels must be a whole number of levels"),
])
def test_sizes_that_are_no_whole_number_are_refused_by_name(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_a_fractional_seed_is_refused():
    with pytest.raises(TypeError, match="seed must be an integer, got 1.5"):
        SmartMiner(2, seed=1.5)
    with pytest.raises(TypeError, match="seed must be an integer, got 1.5"):
        kmeans_assign(X, 2, seed=1.5)


@pytest.mark.parametrize("seed", [2**31, 2**32, -(2**31) - 1])
def test_a_seed_faiss_cannot_keep_is_refused_by_name(seed):
    """A k-means seed outside 32 bits failed inside faiss (OverflowError in ClusteringParameters_seed_set)."""
    with pytest.raises(ValueError, match=rf"seed must be in \[-2\*\*31, 2\*\*31\) \(faiss keeps a 32-bit seed\), "
                                         rf"got {seed}"):
        kmeans_assign(X, 2, seed=seed)
    assert kmeans_assign(X, 2, seed=2**31 - 1).shape == (len(X),)
