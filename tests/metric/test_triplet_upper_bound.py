"""Triplet upper bound with fixed centroids: a property test that it bounds the mean triplet loss."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metric.losses.triplet_upper_bound import (
    TripletUpperBoundLoss,
    aligned_centroids,
    centroid_distance,
    fixed_centroids,
    triplet_upper_bound_loss,
)
from metric.registry import LOSSES
from tests.helpers import assert_close, gradcheck
from tests.reference.class_losses import mean_triplet_loss_all


@pytest.mark.parametrize("num_classes,dim", [(1, 1), (2, 1), (3, 2), (5, 4), (5, 9), (10, 16)])
def test_fixed_centroids_are_equidistant_on_a_sphere(num_classes, dim):
    c = fixed_centroids(num_classes, dim, scale=2.5, dtype=torch.float64)
    assert c.shape == (num_classes, dim)
    if num_classes == 1:
        assert_close(c, torch.zeros(1, dim))
        return
    assert_close(c.norm(dim=1), torch.full((num_classes,), 2.5, dtype=torch.float64))
    assert_close(c.sum(0), torch.zeros(dim))
    d = (c.unsqueeze(0) - c.unsqueeze(1)).norm(dim=2)
    off = ~torch.eye(num_classes, dtype=torch.bool)
    expected = centroid_distance(num_classes, 2.5)
    assert_close(d[off], torch.full((num_classes * (num_classes - 1),), expected, dtype=torch.float64))


def naive_procrustes(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """source @ Q for the orthogonal (D, D) Q minimising ‖source·Q − target‖ (full SVD, textbook form)."""
    u, _, vh = torch.linalg.svd(source.T @ target)
    return source @ (u @ vh)


@pytest.mark.parametrize("num_classes,dim", [(3, 2), (4, 3), (5, 9), (6, 40)])
def test_aligned_centroids_turn_the_simplex_rigidly_to_the_targets(num_classes, dim):
    g = torch.Generator().manual_seed(num_classes * dim)
    simplex = fixed_centroids(num_classes, dim, scale=0.7, dtype=torch.float64)
    targets = torch.randn(num_classes, dim, generator=g, dtype=torch.float64)
    aligned = aligned_centroids(simplex, targets)
    assert_close(aligned @ aligned.T, simplex @ simplex.T, rtol=0, atol=1e-12)  # norms and distances kept
    expected = naive_procrustes(simplex, targets)
    assert_close((aligned - targets).norm(), (expected - targets).norm(), rtol=1e-10, atol=1e-12)  # as close
    assert_close(aligned, expected, rtol=0, atol=1e-9)
    rotation = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))[0]
    assert_close(aligned_centroids(simplex, 3.0 * simplex @ rotation), simplex @ rotation, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="targets must have shape"):
        aligned_centroids(simplex, targets[:, :1])


def test_module_aligns_its_centroids_once_asked():
    loss = TripletUpperBoundLoss(num_classes=3, embedding_size=5, margin=0.2).float()
    before = loss.centroids.clone()
    means = torch.randn(3, 5)
    loss.align_centroids(means)
    assert loss.centroids.dtype == torch.float32 and not torch.allclose(loss.centroids, before)
    assert_close(loss.centroids, aligned_centroids(before, means))
    assert_close(loss.centroids @ loss.centroids.T, before @ before.T, rtol=0, atol=1e-5)


def test_fixed_centroids_need_c_minus_1_dimensions():
    with pytest.raises(ValueError, match="embedding size must be >= 4"):
        fixed_centroids(5, 3)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(2, 12),
    num_classes=st.integers(2, 5),
    extra_dims=st.integers(0, 3),
    margin=st.sampled_from([0.0, 0.05, 0.2, 1.0, 5.0]),
    spread=st.sampled_from([0.01, 0.3, 1.0, 4.0]),
    scale=st.sampled_from([0.1, 1.0, 3.0]),
    imbalance=st.booleans(),
)
def test_bound_is_above_the_mean_triplet_loss(seed, n, num_classes, extra_dims, margin, spread, scale, imbalance):
    g = torch.Generator().manual_seed(seed)
    dim = num_classes - 1 + extra_dims
    centroids = fixed_centroids(num_classes, dim, scale, dtype=torch.float64)
    if imbalance:  # most samples in class 0
        labels = torch.where(torch.rand(n, generator=g) < 0.7, 0, torch.randint(num_classes, (n,), generator=g))
    else:
        labels = torch.randint(num_classes, (n,), generator=g)
    # Around their centroids, around another centroid, or anywhere: the bound must hold for all.
    around = centroids[torch.randint(num_classes, (n,), generator=g)] if seed % 2 else centroids[labels]
    x = around + spread * torch.randn(n, dim, generator=g, dtype=torch.float64)
    bound = float(triplet_upper_bound_loss(x, labels, centroids, margin).sum())
    assert bound >= mean_triplet_loss_all(x, labels, margin) - 1e-9


def naive_bound_terms(x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, margin: float) -> torch.Tensor:
    """The module docstring's sum over the valid triplets (a, p, n) of h_{a,y_n} + 2 e_{p,y_p} + e_{n,y_n}, each
    part credited to its own sample, divided by |T| — loops over triplets, autograd for the gradient."""
    n = len(labels)
    e = [[((x[i] - c) ** 2).sum() for c in centroids] for i in range(n)]
    terms = [x.new_zeros(()) for _ in range(n)]
    count = 0
    for a in range(n):
        for p in range(n):
            for q in range(n):
                if a == p or labels[p] != labels[a] or labels[q] == labels[a]:
                    continue
                count += 1
                ya, yn = int(labels[a]), int(labels[q])
                terms[a] = terms[a] + torch.relu(2 * e[a][ya] - 0.5 * e[a][yn] + margin)
                terms[p] = terms[p] + 2 * e[p][ya]
                terms[q] = terms[q] + e[q][yn]
    return torch.stack(terms) / max(count, 1)


@pytest.mark.parametrize("seed", range(6))
def test_terms_and_gradients_match_the_sum_over_triplets(seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(3, (7,), generator=g)
    centroids = (fixed_centroids(3, 4, dtype=torch.float64) + 0.1 * torch.randn(3, 4, generator=g,
                                                                            dtype=torch.float64)).requires_grad_()
    x = (centroids.detach()[labels] + 0.5 * torch.randn(7, 4, generator=g, dtype=torch.float64)).requires_grad_()
    upstream = torch.rand(7, generator=g, dtype=torch.float64)  # a weighted sum exercises every term's gradient
    ours = triplet_upper_bound_loss(x, labels, centroids, 0.3)
    grads = torch.autograd.grad((ours * upstream).sum(), [x, centroids])
    naive = naive_bound_terms(x, labels, centroids, 0.3)
    expected = torch.autograd.grad((naive * upstream).sum(), [x, centroids])
    assert_close(ours, naive)
    assert_close(grads[0], expected[0])
    assert_close(grads[1], expected[1])


def test_bound_is_zero_with_every_sample_on_its_centroid():
    centroids = fixed_centroids(4, 5, scale=1.0, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 3, 3, 3])
    margin = centroid_distance(4, 1.0) ** 2 / 2  # the largest margin the centroids allow
    losses = triplet_upper_bound_loss(centroids[labels], labels, centroids, margin)
    assert_close(losses, torch.zeros(8))
    assert float(triplet_upper_bound_loss(centroids[labels], labels, centroids, margin + 0.1).sum()) > 0


def test_per_sample_terms_by_hand():
    # Two classes on a line, centroids at ±1, margin 1: |T| = 2 (anchors 0 and 1, negative 2).
    centroids = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    x = torch.tensor([[1.0], [2.0], [0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    # e_i,y_i = 0, 1, 1; sample 0: anchor term (2 − 1)·1·[0 − ½·4 + 1]₊ = 0, pull 2·1·1·0 = 0;
    # sample 1: anchor [2 − ½·9 + 1]₊ = 0, pull 2·1·1·1 = 2; sample 2: never anchor, pull (Σ_{j≠1} n_j(n_j−1) = 2)·1.
    losses = triplet_upper_bound_loss(x, labels, centroids, margin=1.0)
    assert_close(losses, torch.tensor([0.0, 1.0, 1.0]))


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [2, 2, 2, 2], [0]], ids=["singletons", "one-class", "one-sample"])
def test_no_valid_triplet_gives_zero_and_a_gradient(labels):
    labels = torch.tensor(labels)
    x = torch.randn(len(labels), 4, requires_grad=True)
    losses = triplet_upper_bound_loss(x, labels, fixed_centroids(4, 4), margin=0.2)
    assert_close(losses, torch.zeros(len(labels)))
    losses.sum().backward()
    assert_close(x.grad, torch.zeros_like(x))


def test_gradcheck():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    centroids = fixed_centroids(3, 3, dtype=torch.float64)
    x = centroids[labels] + 0.4 * torch.randn(6, 3, dtype=torch.float64)
    assert gradcheck(lambda e: triplet_upper_bound_loss(e, labels, centroids, 0.3), [x])


def test_gradcheck_centroids_too():
    # The squared distances to the centroids have a hand-written backward: check both of its gradients.
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    centroids = fixed_centroids(3, 3, dtype=torch.float64) + 0.1 * torch.randn(3, 3, dtype=torch.float64)
    x = centroids[labels] + 0.4 * torch.randn(6, 3, dtype=torch.float64)
    assert gradcheck(lambda e, c: triplet_upper_bound_loss(e, labels, c, 0.3), [x, centroids])


def test_module_matches_function_and_holds_fixed_centroids(dtype):
    loss = LOSSES.create("triplet_upper_bound", num_classes=3, embedding_size=4, margin=0.2).to(dtype)
    assert isinstance(loss, TripletUpperBoundLoss)
    assert "centroids" in dict(loss.named_buffers()) and not list(loss.parameters())
    x = torch.randn(7, 4, dtype=dtype)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    assert_close(loss(x, labels), triplet_upper_bound_loss(x, labels, fixed_centroids(3, 4), 0.2).sum())


def test_module_rejects_centroids_too_close_for_the_margin():
    with pytest.raises(ValueError, match="too close for margin"):
        TripletUpperBoundLoss(num_classes=3, embedding_size=4, margin=2.0, scale=1.0)


def test_errors():
    centroids = fixed_centroids(3, 2)
    with pytest.raises(ValueError, match="NaN"):
        triplet_upper_bound_loss(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]), centroids, 0.1)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        triplet_upper_bound_loss(torch.zeros(2, 2), torch.tensor([0, 3]), centroids, 0.1)
    with pytest.raises(ValueError, match="centroids must have shape"):
        triplet_upper_bound_loss(torch.zeros(2, 3), torch.tensor([0, 1]), centroids, 0.1)
    # the module's own centroids are no argument of its caller: the message was "centroids must have shape (C, 3)"
    with pytest.raises(ValueError, match=r"embeddings must have shape \(N, 2\) \(the loss's embedding_size\), "
                                         r"got \(2, 3\)"):
        TripletUpperBoundLoss(3, 2, margin=0.1)(torch.zeros(2, 3), torch.tensor([0, 1]))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_labels_of_any_integer_dtype_give_the_int64_value_and_gradient(dtype):
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    values, grads = [], []
    for y in (labels, labels.to(dtype)):
        x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
        value = TripletUpperBoundLoss(num_classes=3, embedding_size=4)(x, y)
        value.backward()
        values.append(value.detach()), grads.append(x.grad)
    assert_close(values[1], values[0])
    assert_close(grads[1], grads[0])


def test_linear_in_batch_size():
    # 65,536 samples: an N×N tensor would need 16 GiB in float32; the bound needs N×C.
    n, num_classes = 65_536, 100
    labels = torch.arange(n) % num_classes
    centroids = fixed_centroids(num_classes, 128)
    x = (centroids[labels] + 0.1 * torch.randn(n, 128)).requires_grad_(True)
    loss = triplet_upper_bound_loss(x, labels, centroids, margin=0.2).sum()
    loss.backward()
    assert math.isfinite(loss.item()) and x.grad.shape == (n, 128)
