"""DSML zero-mean regulariser: naive reference, pytorch-metric-learning, function vs module, gradients."""
from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import reducers as pml_reducers
from pytorch_metric_learning import regularizers as pml_regularizers

from metric.losses import ZeroMeanRegularizer, zero_mean_regularizer
from metric.registry import LOSSES
from tests.helpers import assert_close, gradcheck
from tests.reference import triplet as ref


def test_function_matches_reference(dtype, device):
    emb = torch.randn(7, 5, dtype=dtype, device=device)
    assert_close(zero_mean_regularizer(emb), ref.zero_mean(emb.cpu()))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_module_is_the_weighted_reduced_function(reduction):
    emb, labels = torch.randn(7, 5, dtype=torch.float64), torch.arange(7)
    per_sample = 0.25 * zero_mean_regularizer(emb)
    expected = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    assert_close(LOSSES.create("zero_mean", weight=0.25, reduction=reduction)(emb, labels), expected)


def test_matches_pytorch_metric_learning():
    emb = torch.randn(7, 5, dtype=torch.float64)
    expected = pml_regularizers.ZeroMeanRegularizer(reducer=pml_reducers.MeanReducer())(emb)
    assert_close(ZeroMeanRegularizer()(emb, torch.zeros(7, dtype=torch.long)), expected)


def test_zero_for_zero_mean_embeddings():
    emb = torch.randn(4, 6)
    assert_close(zero_mean_regularizer(emb - emb.mean(1, keepdim=True)), torch.zeros(4), atol=1e-5)


def test_gradcheck():
    assert gradcheck(lambda e: ZeroMeanRegularizer(weight=0.5)(e, torch.arange(6)), (torch.randn(6, 4),))


def test_nan_input_raises():
    with pytest.raises(ValueError, match="embeddings holds 1 NaN"):
        zero_mean_regularizer(torch.tensor([[0.0, float("nan")]]))


def test_float16_sums_beyond_its_range_stay_finite():
    emb = torch.full((2, 128), 1000.0, dtype=torch.float16, requires_grad=True)  # each sum 128,000 > 65,504
    value = ZeroMeanRegularizer()(emb, torch.arange(2))
    assert value.dtype == torch.float32 and value.item() == 128_000
    assert torch.isfinite(torch.autograd.grad(value, emb)[0]).all()
    with pytest.raises(TypeError, match="embeddings must be a floating-point tensor"):
        zero_mean_regularizer(torch.ones(2, 3, dtype=torch.long))
