"""apps.retrieval.head_init: the whitened PCA head start against a naive numpy reference, with fewer images than
axes (or features confined to a subspace) and with plenty of images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from apps.retrieval.head_init import WHITEN_FLOOR, head_weights, init_head
from apps.retrieval.model import create_retrieval_model
from tests.apps.retrieval_runs import BACKBONE
from tests.helpers import assert_close


def naive_pca(features: np.ndarray, dim: int, whiten: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """(principal axes (dim, F) of ``features`` (M, F), descending, unit length; the weight of each: 1, or with
    ``whiten`` 1 / standard deviation, floored at WHITEN_FLOOR × the top variance, the axes the features do not span
    weighted as their weakest spanned axis; scaled to a mean of 1; the rank of the centred features)."""
    centred = features - features.mean(0)
    values, vectors = np.linalg.eig(centred.T @ centred / (len(features) - 1))
    order = np.argsort(-values.real)[:dim]
    values, axes = values.real[order], vectors.real[:, order].T
    rank = min(np.linalg.matrix_rank(centred), dim)
    variances = np.maximum(values, WHITEN_FLOOR * values[0])
    variances[rank:] = variances[rank - 1]
    weights = 1 / np.sqrt(variances) if whiten else np.ones(dim)
    return axes, weights / weights.mean(), rank


def compare(weight: torch.Tensor, bias: torch.Tensor, features: np.ndarray, whiten: bool, atol: float) -> None:
    """``weight``, ``bias`` of the pca or pca_whiten head agree with :func:`naive_pca`: the spanned axes up to sign,
    the others (any orthonormal completion) orthogonal to the data and to each other; all weights."""
    axes, weights, rank = naive_pca(features, weight.shape[0], whiten)
    w = weight.numpy()
    norms = np.linalg.norm(w, axis=1)
    assert_close(norms, weights, rtol=0, atol=atol)
    unit = w / norms[:, None]
    signs = np.sign((unit[:rank] * axes[:rank]).sum(1))
    assert_close(unit[:rank] * signs[:, None], axes[:rank], rtol=0, atol=atol)
    assert_close(unit @ unit.T, np.eye(len(unit)), rtol=0, atol=atol)
    assert_close((features - features.mean(0)) @ unit[rank:].T, np.zeros((len(features), len(unit) - rank)),
                 rtol=0, atol=atol)
    assert_close(bias.numpy(), -(w @ features.mean(0)), rtol=0, atol=atol)


@pytest.mark.parametrize("case", ["fewer images than axes", "features in a subspace"])
def test_whitened_head_weights_axes_the_features_do_not_span_as_their_weakest_axis(case):
    generator = np.random.default_rng(0)
    spread = np.array([3.0, 2.0, 1.0])
    if case == "fewer images than axes":  # 4 images of 6 features: rank 3 < 5 axes
        features = generator.normal(size=(4, 6)) * np.array([3.0, 2, 1.5, 1, 0.5, 0.2]) + 1.0
    else:  # 50 images in a 3-d subspace of 6 features
        basis = np.linalg.qr(generator.normal(size=(6, 3)))[0]
        features = (generator.normal(size=(50, 3)) * spread) @ basis.T - 2.0
    weight, bias = head_weights(torch.from_numpy(features), 5, "pca_whiten")
    assert weight.dtype == bias.dtype == torch.float64 and weight.shape == (5, 6) and bias.shape == (5,)
    compare(weight, bias, features, whiten=True, atol=1e-9)


def test_whitened_head_start_from_few_images_weighs_empty_axes_as_the_weakest_spanned_one():
    """20 images of 64 features, 32-d head: the 13 axes beyond the 19 the images span weigh no more than the weakest
    spanned one (they weighed 1 / sqrt(WHITEN_FLOOR) ≈ 31.6 times the top axis, 3.7 times the weakest spanned one)."""
    generator = torch.Generator().manual_seed(0)
    scales = torch.logspace(0, -1.5, 64, dtype=torch.float64)
    features = torch.randn(20, 64, generator=generator, dtype=torch.float64) * scales
    norms = head_weights(features, 32, "pca_whiten")[0].norm(dim=1)
    assert float(norms[19:].max()) <= float(norms[18]) * (1 + 1e-12)


@pytest.mark.parametrize("how", ["pca", "pca_whiten"])
def test_head_start_from_plenty_of_images_against_a_naive_reference(how):
    """Features of full rank: every axis is spanned, so the weights are those of plain whitening (the last 2 axes,
    of variance below WHITEN_FLOOR × the top one, floored)."""
    features = np.random.default_rng(1).normal(size=(300, 6)) * np.array([3.0, 2, 1.5, 1, 1e-3, 1e-4]) + 0.5
    weight, bias = head_weights(torch.from_numpy(features), 5, how)
    compare(weight, bias, features, whiten=how == "pca_whiten", atol=1e-12)


def test_init_head_copies_the_head_weights():
    model = create_retrieval_model(BACKBONE, weights=None, embedding_dim=32)
    features = torch.randn(20, model.feature_dim, generator=torch.Generator().manual_seed(2))
    init_head(model, features, "pca_whiten")
    weight, bias = head_weights(features, 32, "pca_whiten")
    assert torch.equal(model.embedding.weight, weight.float()) and torch.equal(model.embedding.bias, bias.float())
    with pytest.raises(ValueError, match="not 'identity'"):
        head_weights(features, 32, "identity")
