"""A NaN or infinite margin, weight or scale is refused when the loss is built: it made every loss value NaN or
Inf (training diverged with no word about the setting)."""
from __future__ import annotations

import pytest

from metric.losses import (
    GlobalLoss,
    HierarchicalTripletLoss,
    ISTripletLoss,
    SoftTripleLoss,
    TripletMarginLoss,
    ZeroMeanRegularizer,
)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("make, name", [
    (lambda v: TripletMarginLoss(margin=v), "margin"),
    (lambda v: GlobalLoss(margin=v), "margin"),
    (lambda v: GlobalLoss(lam=v), "lam"),
    (lambda v: ISTripletLoss(margin=v), "margin"),
    (lambda v: HierarchicalTripletLoss(beta=v), "beta"),
    (lambda v: ZeroMeanRegularizer(weight=v), "weight"),
    (lambda v: SoftTripleLoss(3, 4, la=v), "la"),
])
def test_a_setting_that_is_no_finite_number_is_refused(make, name, value):
    with pytest.raises(ValueError, match=f"{name} must be"):
        make(value)


def test_finite_settings_are_kept():
    assert TripletMarginLoss(margin=-0.1).margin == -0.1  # a negative margin stays the caller's choice
    assert ZeroMeanRegularizer(weight=0).weight == 0 and HierarchicalTripletLoss(beta=0.3).beta == 0.3
