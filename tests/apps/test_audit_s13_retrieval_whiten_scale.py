"""apps.retrieval.head_init: whitening is scale-invariant — features of scale 1e-6 (variances ~1e-12) or 1e-8 get the
head of the same features at scale 1 (no absolute variance floor flattens them)."""
from __future__ import annotations

import pytest
import torch

from apps.retrieval.head_init import head_weights
from tests.helpers import assert_close


@pytest.mark.parametrize("how", ["pca_whiten", "class_whiten"])
@pytest.mark.parametrize("scale", [1e-6, 1e-8, 1e6])
def test_whitened_head_weights_do_not_depend_on_the_features_scale(how, scale):
    generator = torch.Generator().manual_seed(0)
    spread = torch.logspace(0, -2, 8, dtype=torch.float64)
    features = torch.randn(60, 8, generator=generator, dtype=torch.float64) * spread + 0.3
    labels = torch.arange(60) % 6
    weight, bias = head_weights(features, 6, how, labels)
    scaled_weight, scaled_bias = head_weights(features * scale, 6, how, labels)
    signs = torch.sign((weight * scaled_weight).sum(1, keepdim=True))  # an axis is defined up to its sign
    assert_close(scaled_weight * signs, weight, rtol=0, atol=1e-9)
    assert_close(scaled_bias * signs.squeeze(1), bias * scale, rtol=0, atol=1e-9 * scale)


def test_whitened_head_of_identical_features_is_finite():
    weight, bias = head_weights(torch.full((5, 4), 1e-7, dtype=torch.float64), 3, "pca_whiten")
    assert bool(torch.isfinite(weight).all() and torch.isfinite(bias).all())
    assert_close(weight.norm(dim=1).mean(), torch.tensor(1.0, dtype=torch.float64))
