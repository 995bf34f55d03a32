"""Every image-level loss called as a user would: 16-bit embeddings and autocast give the float32 loss of the same
values, labels on another device and integer embeddings give clear errors."""
from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

from metric.distances import CosineSimilarity, SNRDistance
from metric.losses import (GlobalLoss, HierarchicalTripletLoss, RepresentativeProximityLoss, SoftTripleLoss,
                           TripletMarginLoss, TripletUpperBoundLoss, ZeroMeanRegularizer)
from metric.miners import BatchAllMiner, BatchHardMiner, SemiHardMiner
from tests.helpers import assert_close

N, D, C = 16, 8, 4
LABELS = torch.arange(N) % C


def _hierarchical() -> nn.Module:
    loss = HierarchicalTripletLoss(num_levels=3)
    loss.update_tree(_embeddings(), LABELS)
    return loss


# Margins large enough that every loss is positive on ``_embeddings()`` (checked in the tests below):
# with the defaults, the Euclidean and SNR triplet losses were 0 there, and 0 == 0 compared nothing.
LOSSES: dict[str, Callable[[], nn.Module]] = {
    "triplet_margin": lambda: TripletMarginLoss(margin=1.0),
    "triplet_margin_cosine": lambda: TripletMarginLoss(distance=CosineSimilarity()),
    "triplet_margin_snr": lambda: TripletMarginLoss(margin=2.0, distance=SNRDistance()),
    "batch_hard": lambda: TripletMarginLoss(margin=1.0, miner=BatchHardMiner()),
    "semi_hard": lambda: TripletMarginLoss(margin=1.0, miner=SemiHardMiner(1.0)),
    "hierarchical_triplet": _hierarchical,
    "global": GlobalLoss,
    "triplet_upper_bound": lambda: TripletUpperBoundLoss(C, D, scale=10.0),
    "soft_triple": lambda: SoftTripleLoss(C, D, centers_per_class=2),
    "representative_proximity": RepresentativeProximityLoss,
    "zero_mean": ZeroMeanRegularizer,
}


def _embeddings() -> torch.Tensor:
    """Tight classes far from the origin (as unnormalised features are): their distances are small differences
    of large squared norms, all round-off in 16 bits."""
    generator = torch.Generator().manual_seed(1)
    centres = 8.0 + 0.3 * torch.randn(C, D, generator=generator)
    return centres[LABELS] + 0.05 * torch.randn(N, D, generator=generator)


def _call(loss: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if isinstance(loss, RepresentativeProximityLoss):
        return loss(embeddings, labels, (torch.arange(N) < C).to(labels.device))  # the first of each class
    return loss(embeddings, labels)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_embeddings_give_the_float32_loss_of_their_values(name, dtype):
    loss = LOSSES[name]()
    x = _embeddings().to(dtype).requires_grad_(True)
    value = _call(loss, x, LABELS)
    assert value.dtype == torch.float32
    expected = _call(loss, x.detach().float(), LABELS)
    assert expected > 0.01  # an active loss: two zeros would agree whatever the 16-bit path computed
    assert_close(value, expected, rtol=1e-4, atol=1e-4)
    (grad,) = torch.autograd.grad(value, x)
    assert grad.dtype == dtype and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_leaves_the_loss_of_float32_embeddings_as_it_is(name, dtype):
    loss = LOSSES[name]()
    x = _embeddings().requires_grad_(True)
    expected = _call(loss, x, LABELS)
    assert expected > 0.01  # an active loss (see LOSSES)
    with torch.autocast("cpu", dtype=dtype):
        value = _call(loss, x, LABELS)
    assert_close(value, expected, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(torch.autograd.grad(value, x)[0]).all()


@pytest.mark.parametrize("name", LOSSES)
def test_labels_on_another_device_than_the_embeddings_are_refused(name):
    loss = LOSSES[name]()
    with pytest.raises(ValueError, match=r"labels must be on the device of embeddings \(cpu\), got meta"):
        _call(loss, _embeddings(), LABELS.to("meta"))


@pytest.mark.parametrize("name", LOSSES)
def test_integer_embeddings_are_refused(name):
    loss = LOSSES[name]()
    with pytest.raises(TypeError, match="embeddings must be a floating-point tensor, got torch.int64"):
        _call(loss, _embeddings().long(), LABELS)


@pytest.mark.parametrize("miner", [BatchHardMiner(), SemiHardMiner(2.0), BatchAllMiner(margin=2.0)], ids=type)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_miners_find_the_float32_triplets_of_16_bit_embeddings_and_under_autocast(miner, dtype):
    x = _embeddings()
    expected = miner(x.to(dtype).float(), LABELS)
    assert len(expected) > 0
    for found in (miner(x.to(dtype), LABELS), _under_autocast(dtype, miner, x.to(dtype).float())):
        assert all(torch.equal(a, b) for a, b in zip(found, expected))


def _under_autocast(dtype: torch.dtype, miner: nn.Module, x: torch.Tensor):
    with torch.autocast("cpu", dtype=dtype):
        return miner(x, LABELS)
