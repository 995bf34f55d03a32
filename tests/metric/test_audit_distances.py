"""Adversarial audit of the distances: far from the origin, coincident points, their gradients."""
from __future__ import annotations

import pytest
import torch

from metric.distances.euclidean import EuclideanDistance
from metric.distances.snr import SNRDistance
from metric.miners.batch_hard import BatchHardMiner
from metric.miners.semi_hard import SemiHardMiner
from tests.helpers import assert_close, gradcheck
from tests.reference.triplet import batch_hard, pairwise, semi_hard


def _far_from_the_origin(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of 8 points 0.01–0.1 apart around a common offset of norm ~240 (e.g. un-normalised ReLU
    features)."""
    g = torch.Generator().manual_seed(0)
    offset = 30 * torch.randn(1, 64, generator=g)
    x = offset + 0.01 * torch.randn(16, 64, generator=g)
    x[8:] += 0.02
    return x.to(dtype), torch.arange(2).repeat_interleave(8)


@pytest.mark.parametrize("squared", [False, True])
def test_pairwise_euclidean_far_from_the_origin_matches_the_loops_in_float32(squared):
    # ‖x‖² + ‖y‖² − 2xᵀy on rows of norm 240 rounds off by ~eps·240² ≈ 3e-3 in float32: distances of 0.1
    # came out as 0.088 or 0.0625, and a point's distance to another equal to itself as 0.09.
    x, _ = _far_from_the_origin()
    kind = "squared_euclidean" if squared else "euclidean"
    expected = pairwise(x.double(), x.double(), kind)
    assert_close(EuclideanDistance(squared=squared).pairwise(x).double(), expected, rtol=0, atol=1e-4)


def test_miners_far_from_the_origin_find_the_triplets_of_the_loops():
    x, labels = _far_from_the_origin()
    hard = BatchHardMiner()(x, labels)
    assert list(zip(*(t.tolist() for t in hard))) == batch_hard(x.double(), labels, "euclidean")
    semi = SemiHardMiner(margin=0.05)(x, labels)
    assert sorted(zip(*(t.tolist() for t in semi))) == sorted(semi_hard(x.double(), labels, "euclidean", 0.05))


def _with_coincident_rows() -> torch.Tensor:
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x[1], x[3] = x[0], x[2]
    return x


@pytest.mark.parametrize("distance", [EuclideanDistance(), EuclideanDistance(squared=True), SNRDistance()],
                         ids=["euclidean", "squared", "snr"])
def test_paired_gradcheck_at_coincident_points(distance):
    # ‖x − y‖ has a cone at x = y: central differences read 0 there, the analytic gradient is 0 (not NaN).
    x = _with_coincident_rows().requires_grad_(True)
    y = _with_coincident_rows().requires_grad_(True)
    assert gradcheck(distance.paired, (x, y))


def test_snr_pairwise_gradcheck_at_coincident_points():
    x = _with_coincident_rows().requires_grad_(True)
    assert gradcheck(SNRDistance().pairwise, (x, _with_coincident_rows().requires_grad_(True)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairwise_euclidean_gradient_at_coincident_points_is_finite_and_exact_elsewhere(dtype):
    x = _with_coincident_rows().to(dtype).requires_grad_(True)
    EuclideanDistance().pairwise(x).sum().backward()
    exact = x.detach().double().requires_grad_(True)
    differences = exact.unsqueeze(1) - exact.unsqueeze(0)
    apart = differences.abs().sum(2) > 0  # the cone's points contribute 0, as safe_sqrt makes them
    differences[apart].pow(2).sum(1).sqrt().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert_close(x.grad.double(), exact.grad, rtol=0, atol=1e-4 if dtype == torch.float32 else 1e-6)
