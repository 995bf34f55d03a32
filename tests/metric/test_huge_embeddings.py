"""Distances of embeddings so large that their squares overflow float32: the values of float64, not inf or NaN."""
from __future__ import annotations

import pytest
import torch

from metric._checks import NonFiniteError
from metric.distances import BaseDistance, CosineSimilarity, EuclideanDistance, SNRDistance
from metric.losses import GlobalLoss, TripletMarginLoss
from metric.miners import BatchHardMiner, SemiHardMiner
from tests.helpers import assert_close

DISTANCES = {"euclidean": EuclideanDistance, "snr": SNRDistance, "cosine": CosineSimilarity}
LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def _embeddings(scale: float, n: int = 8, dim: int = 5) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * scale


@pytest.mark.parametrize("name", DISTANCES)
@pytest.mark.parametrize("scale", [1e20, 1e30, 3e37])
@pytest.mark.parametrize("chunk_size", [3, 4096])
def test_huge_float32_embeddings_get_the_float64_distances(name, scale, chunk_size):
    # ‖x‖² overflowed float32 from norms of 1.8e19: Euclidean gave inf/NaN, SNR NaN, cosine 0 everywhere.
    distance = DISTANCES[name](chunk_size=chunk_size)
    x64, y64 = _embeddings(scale), _embeddings(scale, n=6).flip(0)
    x, y = x64.float(), y64.float()
    expected = distance.pairwise(x.double(), y.double())
    atol = 1e-3 * float(expected.abs().max())  # a point's distance to itself: ~sqrt(eps)·‖x − ȳ‖ in float32
    assert_close(distance.pairwise(x, y), expected.float(), rtol=1e-4, atol=atol)
    blocks = torch.cat([block for _, block in distance.iter_pairwise(x, y)])
    assert_close(blocks, expected.float(), rtol=1e-4, atol=atol)
    paired = distance.paired(x[:6], y)
    assert_close(paired, distance.paired(x[:6].double(), y.double()).float(), rtol=1e-4, atol=0.0)


@pytest.mark.parametrize("name", DISTANCES)
def test_huge_bfloat16_embeddings_get_the_float32_distances_of_their_values(name):
    distance = DISTANCES[name]()
    x = _embeddings(1e30).bfloat16()
    expected = distance.pairwise(x.double())
    # atol: a point's distance to itself is ~sqrt(eps)·‖x − ȳ‖ in float32 (EuclideanDistance's round-off)
    assert_close(distance.pairwise(x), expected.float(), rtol=1e-4, atol=1e-3 * float(expected.abs().max()))


def test_huge_embeddings_keep_zero_squared_distances_zero():
    # the squared distances are scaled back by scale·scale: one factor scale² (beyond float32) would give 0·inf = NaN
    x = _embeddings(1e25).float()
    squared = EuclideanDistance(squared=True).paired(x, torch.cat([x[:4], x[4:].flip(0)]))
    assert torch.equal(squared, torch.tensor([0.0] * 4 + [float("inf")] * 4))  # ‖x − y‖² ~ 1e50: beyond float32


@pytest.mark.parametrize("name", DISTANCES)
def test_huge_embeddings_get_the_float64_gradient(name):
    distance = DISTANCES[name]()
    weights = torch.rand(8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = []
    for dtype in (torch.float32, torch.float64):
        x = _embeddings(1e20).to(dtype).requires_grad_(True)
        (distance.pairwise(x).double() * weights).sum().backward()
        grads.append(x.grad.double())
    assert torch.isfinite(grads[0]).all()
    assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-3 * float(grads[1].abs().max()))


@pytest.mark.parametrize("miner", [BatchHardMiner, lambda: SemiHardMiner(margin=1e20)])
def test_triplet_loss_and_miners_on_huge_embeddings_match_float64(miner):
    x64 = _embeddings(1e20)
    loss = TripletMarginLoss(margin=1e20, miner=miner())
    expected_triplets = loss.miner(x64, LABELS)
    assert len(expected_triplets) > 0
    for got, expected in zip(loss.miner(x64.float(), LABELS), expected_triplets):
        assert torch.equal(got, expected)
    expected = loss(x64, LABELS)
    assert 0 < float(expected) < float("inf")
    assert_close(loss(x64.float(), LABELS), expected.float(), rtol=1e-4, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("where", ["x", "y"])
def test_nan_and_inf_are_still_refused_by_name(dtype, bad, where):
    x, y = torch.ones(3, 4, dtype=dtype), torch.ones(2, 4, dtype=dtype)
    (x if where == "x" else y)[1, 2] = bad
    for distance in (EuclideanDistance(), SNRDistance(), CosineSimilarity()):
        with pytest.raises(NonFiniteError, match=f"^{where} holds 1 NaN/Inf value"):
            distance.pairwise(x, y)


def test_finite_values_whose_sum_of_squares_overflows_are_distances_not_errors():
    x = torch.full((4, 3), 3e38)
    x[1] = -3e38
    distance: BaseDistance = CosineSimilarity()
    assert_close(distance.pairwise(x), torch.tensor([[1.0, -1, 1, 1], [-1, 1, -1, -1], [1, -1, 1, 1], [1, -1, 1, 1]]))
    same, opposite = EuclideanDistance().paired(x[:2], x[2:]).tolist()
    assert 0 < same < 1e-30 * 3e38 and opposite == float("inf")  # the sqrt floor scales with the inputs


def test_global_loss_with_euclidean_distances_of_huge_embeddings_matches_float64():
    # d(a, p) ~ 1e19 overflowed (x − y)² in float32 (NonFiniteError on d_pos); the loss itself, ~1e38, fits float32.
    # (With the default squared distance the loss, a variance of d², leaves float32's range from norms of ~1e10.)
    loss = GlobalLoss(distance=EuclideanDistance())
    x64 = _embeddings(1e19, n=6)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    expected = loss(x64, labels)
    assert float(expected) < torch.finfo(torch.float32).max
    assert_close(loss(x64.float(), labels), expected.float(), rtol=1e-4, atol=0.0)
