"""Audit s13 of metric/: the zero-mean regulariser refuses a negative weight, which would reward ever larger
component sums (a loss without a minimum), as the other losses refuse settings that reverse their terms."""
from __future__ import annotations

import pytest
import torch

from metric.losses import ZeroMeanRegularizer
from metric.registry import LOSSES


@pytest.mark.parametrize("make", [lambda w: ZeroMeanRegularizer(weight=w),
                                  lambda w: LOSSES.create("zero_mean", weight=w)], ids=["class", "registry"])
def test_zero_mean_regularizer_refuses_a_negative_weight(make) -> None:
    with pytest.raises(ValueError, match="weight must be >= 0, got -0.5"):
        make(-0.5)
    assert make(0.0)(torch.ones(2, 3), torch.tensor([0, 1])).item() == 0.0
