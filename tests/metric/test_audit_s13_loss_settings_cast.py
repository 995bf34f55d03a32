"""Audit s13 of metric/: casting a loss module (``.half()``, ``.to(dtype)``) leaves its setting buffers (per-class
margins, fixed centroids) at their precision, while they still follow the module's device and its learned
parameters still follow the cast."""
from __future__ import annotations

import pytest
import torch

from metric.losses import SoftTripleLoss, TripletMarginLoss, TripletUpperBoundLoss, fixed_centroids

LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 2])
# 0.1 and 0.3 are no float16 values: .half() rounded them to 0.0999755859375 and 0.300048828125.
MARGINS = torch.tensor([[0.0, 0.1, 0.3], [0.1, 0.0, 0.7], [0.3, 0.7, 0.0]])


@pytest.mark.parametrize("cast", [lambda m: m.half(), lambda m: m.to(torch.bfloat16), lambda m: m.double()],
                         ids=["half", "bfloat16", "double"])
def test_class_margins_keep_their_values_when_the_loss_is_cast(cast) -> None:
    loss = cast(TripletMarginLoss(class_margins=MARGINS.clone(), reduction="none"))
    assert loss.class_margins.dtype == torch.float32 and torch.equal(loss.class_margins, MARGINS)
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    expected = TripletMarginLoss(class_margins=MARGINS, reduction="none")(x, LABELS)
    assert torch.equal(loss(x, LABELS), expected)


def test_class_margins_of_a_cast_loss_save_and_load_unrounded() -> None:
    state = TripletMarginLoss(class_margins=MARGINS.clone()).half().state_dict()
    restored = TripletMarginLoss(class_margins=torch.zeros(3, 3))
    restored.load_state_dict(state)
    assert torch.equal(restored.class_margins, MARGINS)


def test_setting_buffers_still_follow_the_device_and_parameters_the_cast() -> None:
    assert TripletMarginLoss(class_margins=MARGINS.clone()).to("meta").class_margins.is_meta
    assert TripletUpperBoundLoss(3, 4).to("meta", torch.float16).centroids.is_meta
    assert SoftTripleLoss(3, 4, centers_per_class=2).half().centers.dtype == torch.float16
    assert TripletMarginLoss().half().class_margins is None


def test_fixed_centroids_stay_a_regular_simplex_when_the_loss_is_cast() -> None:
    """Rounded to float16, the simplex's centroids moved and so did the bound of samples near them."""
    loss = TripletUpperBoundLoss(3, 4, margin=1.4, scale=1.0)
    assert torch.equal(loss.half().centroids, fixed_centroids(3, 4))
    x = fixed_centroids(3, 4)[LABELS] + 0.01 * torch.randn(7, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loss(x, LABELS), TripletUpperBoundLoss(3, 4, margin=1.4, scale=1.0)(x, LABELS))
