"""Losses with per-class vectors: a NaN margin or scale is refused (it made every loss NaN), numpy integer sizes
act as their ints and fractional sizes are refused by name (torch refused them with "tuple of ints")."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metric.losses import SoftTripleLoss, TripletUpperBoundLoss

X = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
Y = torch.arange(8) % 4


@pytest.mark.parametrize("kwargs, match", [
    ({"margin": float("nan")}, "margin must be >= 0, got nan"),
    ({"scale": float("nan")}, "scale must be > 0 and finite, got nan"),
    ({"scale": float("inf")}, "scale must be > 0 and finite, got inf"),
])
def test_triplet_upper_bound_refuses_a_nan_margin_or_scale(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TripletUpperBoundLoss(4, 4, **kwargs)


@pytest.mark.parametrize("make, match", [
    (lambda: TripletUpperBoundLoss(4.0, 4), "num_classes must be an integer >= 2"),
    (lambda: TripletUpperBoundLoss(4, 4.0), "the embedding size must be an integer >= 0, got 4.0"),
    (lambda: SoftTripleLoss(4.0, 4), "num_classes must be an integer >= 1, got 4.0"),
    (lambda: SoftTripleLoss(4, 4, centers_per_class=2.5), "centers_per_class must be an integer >= 1, got 2.5"),
])
def test_fractional_sizes_are_refused_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_numpy_integer_sizes_act_as_their_ints():
    torch.manual_seed(0)
    expected = SoftTripleLoss(4, 4, centers_per_class=2)(X, Y)
    torch.manual_seed(0)
    loss = SoftTripleLoss(np.int64(4), np.int32(4), centers_per_class=np.int64(2))
    assert loss.num_classes == 4 and type(loss.num_classes) is int and torch.equal(loss(X, Y), expected)
    assert torch.equal(TripletUpperBoundLoss(np.int64(4), np.int64(4))(X, Y), TripletUpperBoundLoss(4, 4)(X, Y))
