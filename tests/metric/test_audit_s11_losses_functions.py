"""The pure loss functions refuse the settings their modules refuse (a NaN or infinite margin, lam, la, ...): they
returned NaN or Inf losses with no word about the setting, and ``triplet_upper_bound_loss`` let a NaN margin
through its own ``margin < 0`` test. Distances to an empty set of rows keep a finite (zero) gradient: the mean row
of no row is NaN and reached the gradient of the other input."""
from __future__ import annotations

import pytest
import torch

from metric.distances import CosineSimilarity, EuclideanDistance, SNRDistance, squared_euclidean
from metric.losses import (fixed_centroids, global_loss, is_triplet_loss, soft_triple_loss, triplet_margin_loss,
                           triplet_upper_bound_loss)
from metric.miners import TripletIndices

BAD = [float("nan"), float("inf"), -float("inf")]
D = 3


def _embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(4, D, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 0, 1, 1])


@pytest.mark.parametrize("value", BAD)
def test_triplet_upper_bound_loss_refuses_a_non_finite_margin(value):
    x, labels = _embeddings()
    with pytest.raises(ValueError, match="margin must be"):
        triplet_upper_bound_loss(x, labels, fixed_centroids(2, D), value)


@pytest.mark.parametrize("value", BAD)
def test_triplet_margin_loss_refuses_a_non_finite_margin(value):
    x, _ = _embeddings()
    triplets = TripletIndices(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    with pytest.raises(ValueError, match="margin must be"):
        triplet_margin_loss(x, triplets, value, EuclideanDistance())


def test_triplet_margin_loss_with_class_margins_leaves_margin_unused():
    x, labels = _embeddings()
    triplets = TripletIndices(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    losses = triplet_margin_loss(x, triplets, float("nan"), EuclideanDistance(), labels, torch.full((2, 2), 0.5))
    assert torch.isfinite(losses).all()


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("name", ["margin", "lam"])
def test_global_loss_refuses_a_non_finite_setting(name, value):
    settings = {"margin": 0.4, "lam": 0.8, name: value}
    with pytest.raises(ValueError, match=f"{name} must be"):
        global_loss(torch.rand(3), torch.rand(3), **settings)


def test_global_loss_refuses_a_negative_lam():
    with pytest.raises(ValueError, match="lam must be >= 0"):
        global_loss(torch.rand(3), torch.rand(3), 0.4, -1.0)


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("name", ["la", "gamma", "tau", "margin"])
def test_soft_triple_loss_refuses_a_non_finite_setting(name, value):
    x, labels = _embeddings()
    with pytest.raises(ValueError, match=f"{name} must be"):
        soft_triple_loss(x, labels, torch.randn(D, 4), 2, 2, **{name: value})


@pytest.mark.parametrize("value", BAD)
def test_is_triplet_loss_refuses_a_non_finite_margin(value):
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :2] = 1
    for reduction in ("none", "mean"):
        with pytest.raises(ValueError, match="margin must be"):
            is_triplet_loss(torch.randn(1, D, 4, 4), labels, margin=value, k_per_class=4, reduction=reduction)


@pytest.mark.parametrize("distance", [EuclideanDistance(), squared_euclidean(), SNRDistance(), CosineSimilarity()],
                         ids=["euclidean", "squared", "snr", "cosine"])
def test_pairwise_to_no_row_gives_an_empty_block_and_a_zero_gradient(distance):
    x = torch.randn(4, D, requires_grad=True)
    values = distance.pairwise(x, torch.empty(0, D))
    assert values.shape == (4, 0)
    values.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("chunk_size", [2.5, 2.0, True, 0])
@pytest.mark.parametrize("make", [EuclideanDistance, CosineSimilarity, SNRDistance, squared_euclidean])
def test_a_chunk_size_that_is_no_whole_number_is_refused_by_name(make, chunk_size):
    # 2.5 failed at the first chunked call with torch's "'float' object cannot be interpreted as an integer"
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        make(chunk_size=chunk_size)
