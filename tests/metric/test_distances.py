"""Distances: naive-loop references, pairwise vs paired, chunking, PML values, gradients, edge cases."""
from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances

from metric.distances import BaseDistance, CosineSimilarity, EuclideanDistance, SNRDistance
from metric.registry import DISTANCES
from tests.helpers import assert_close, gradcheck
from tests.reference import triplet as ref

KINDS = ["euclidean", "squared_euclidean", "cosine", "snr"]


@pytest.mark.parametrize("kind", KINDS)
def test_pairwise_matches_reference(kind, dtype, device):
    x = torch.randn(5, 6, dtype=dtype, device=device)
    y = torch.randn(4, 6, dtype=dtype, device=device)
    dist = DISTANCES.create(kind)
    assert_close(dist.pairwise(x, y), ref.pairwise(x.cpu(), y.cpu(), kind))
    # Self pairs: the one-matmul expansion leaves ~sqrt(eps)·‖x‖ of round-off on the diagonal in float32; only the
    # diagonal gets that tolerance (on the whole matrix it let off-diagonal errors 10× the dtype's pass).
    got, expected = dist(x).cpu(), ref.pairwise(x.cpu(), x.cpu(), kind)
    off = ~torch.eye(5, dtype=torch.bool)
    assert_close(got[off], expected[off])
    assert_close(got.diagonal(), expected.diagonal(), atol=3e-3 if dtype == torch.float32 else None)


@pytest.mark.parametrize("kind", KINDS)
def test_paired_matches_reference(kind, dtype):
    x, y = torch.randn(2, 7, 5, dtype=dtype)
    expected = torch.tensor([ref.distance(a, b, kind) for a, b in zip(x.tolist(), y.tolist())], dtype=torch.float64)
    assert_close(DISTANCES.create(kind).paired(x, y), expected)


def test_registry_builds_the_right_objects():
    assert type(DISTANCES.create("euclidean")) is EuclideanDistance and not DISTANCES.create("euclidean").squared
    assert DISTANCES.create("squared_euclidean").squared
    assert DISTANCES.create("squared_euclidean", chunk_size=7).chunk_size == 7
    assert isinstance(DISTANCES.create("cosine"), CosineSimilarity) and DISTANCES.create("cosine").is_inverted
    assert isinstance(DISTANCES.create("snr"), SNRDistance) and not DISTANCES.create("snr").is_inverted


@pytest.mark.parametrize("name", DISTANCES.names())
def test_paired_is_the_diagonal_of_pairwise(name, dtype):
    x, y = torch.randn(2, 9, 16, dtype=dtype)
    dist = DISTANCES.create(name)
    assert_close(dist.paired(x, y), torch.diagonal(dist.pairwise(x, y)), atol=1e-4 if dtype == torch.float32 else None)


@pytest.mark.parametrize("name", DISTANCES.names())
def test_chunked_pairwise_equals_unchunked(name):
    x, y = torch.randn(11, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    chunked = DISTANCES.create(name, chunk_size=3)
    assert_close(chunked.pairwise(x, y), DISTANCES.create(name).pairwise(x, y))
    blocks = list(chunked.iter_pairwise(x, y))
    assert [rows for rows, _ in blocks] == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 11)]
    assert_close(torch.cat([block for _, block in blocks]), DISTANCES.create(name).pairwise(x, y))


@pytest.mark.parametrize("name", DISTANCES.names())
def test_gradients_are_finite_for_identical_points(name):
    x = torch.randn(4, 8).repeat(2, 1).requires_grad_(True)
    dist = DISTANCES.create(name)
    (dist.pairwise(x).sum() + dist.paired(x, x).sum()).backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_cosine_of_a_zero_vector_is_zero_in_every_dtype(dtype):
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=dtype, requires_grad=True)
    dist = CosineSimilarity()
    values = dist.pairwise(x)
    (values.sum() + dist.paired(x, x.flip(0)).sum()).backward()
    assert values.tolist() == [[0.0, 0.0], [0.0, 1.0]]  # float16's 1e-12 norm floor was 0: 0/0 gave NaN
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("squared", [False, True])
def test_euclidean_distance_of_a_point_to_itself_is_zero_with_zero_gradient(squared):
    x = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    dist = EuclideanDistance(squared=squared)
    d = dist.paired(x, x)
    assert_close(d, torch.zeros(6))
    d.sum().backward()
    assert_close(x.grad, torch.zeros(6, 8))


def test_euclidean_round_off_never_goes_negative():
    x = 1e3 + torch.randn(64, 32) * 1e-3  # large norms, tiny differences: ‖x‖² + ‖y‖² − 2xᵀy cancels
    assert (EuclideanDistance(squared=True).pairwise(x) >= 0).all()
    assert torch.isfinite(EuclideanDistance().pairwise(x)).all()


@pytest.mark.parametrize("kind", ["euclidean", "squared_euclidean", "cosine", "snr"])
def test_pairwise_gradcheck(kind):
    x, y = torch.randn(4, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    dist = DISTANCES.create(kind, chunk_size=2)
    assert gradcheck(dist.pairwise, (x, y))
    assert gradcheck(dist.paired, (x, y[:1].repeat(4, 1)))


def test_snr_matches_pytorch_metric_learning():
    # PML's query is the anchor: mat[i, j] = var(ref_j − query_i) / var(query_i) with unbiased variances.
    x, y = torch.randn(6, 10, dtype=torch.float64), torch.randn(5, 10, dtype=torch.float64)
    pml = pml_distances.SNRDistance(normalize_embeddings=False)
    assert_close(SNRDistance().pairwise(x, y), pml(x, y))
    assert_close(SNRDistance().paired(x, y[:1].expand(6, 10)), pml.pairwise_distance(x, y[:1].expand(6, 10)))


def test_snr_is_not_symmetric_and_scale_invariant():
    x, y = torch.randn(2, 3, 8, dtype=torch.float64)
    snr = SNRDistance()
    assert not torch.allclose(snr.pairwise(x, y), snr.pairwise(y, x).T)
    assert_close(snr.pairwise(3 * x + 1, 3 * y + 1), snr.pairwise(x, y))


def test_snr_of_a_constant_anchor_is_finite():
    x = torch.ones(2, 4)
    assert torch.isfinite(SNRDistance().pairwise(x, torch.randn(3, 4))).all()
    assert_close(SNRDistance().paired(x, x), torch.zeros(2))


def test_cosine_matches_pytorch_metric_learning():
    x, y = torch.randn(6, 10), torch.randn(5, 10)
    assert_close(CosineSimilarity().pairwise(x, y), pml_distances.CosineSimilarity()(x, y))


def test_euclidean_matches_torch_cdist(device):
    x, y = torch.randn(40, 16, device=device), torch.randn(30, 16, device=device)
    assert_close(EuclideanDistance().pairwise(x, y), torch.cdist(x, y), atol=1e-4)


@pytest.mark.parametrize("name", DISTANCES.names())
def test_invalid_inputs_raise_clear_errors(name):
    dist = DISTANCES.create(name)
    with pytest.raises(ValueError, match="x holds 1 NaN"):
        dist.pairwise(torch.tensor([[float("nan"), 0.0]]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="y holds"):
        dist.paired(torch.zeros(2, 2), torch.tensor([[0.0, float("inf")], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="same embedding size"):
        dist.pairwise(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="same length"):
        dist.paired(torch.zeros(2, 3), torch.zeros(3, 3))


def test_gap_orders_triplets_for_distances_and_similarities():
    closer, farther = torch.tensor([1.0]), torch.tensor([2.0])
    assert EuclideanDistance().gap(closer, farther) < 0  # d(a,p) < d(a,n): satisfied
    assert CosineSimilarity().gap(farther, closer) < 0  # s(a,p) > s(a,n): satisfied
    assert isinstance(SNRDistance(), BaseDistance)


@pytest.mark.slow
def test_iter_pairwise_holds_at_most_chunk_size_rows_at_once():
    n, d, chunk = 65_536, 32, 256
    x, y = torch.randn(n, d), torch.randn(n, d)
    dist = EuclideanDistance(squared=True, chunk_size=chunk)
    row_min = torch.empty(n)
    covered = 0
    for rows, block in dist.iter_pairwise(x, y):
        assert block.shape == (rows.stop - rows.start, n) and block.numel() <= chunk * n
        row_min[rows] = block.min(1).values
        covered += block.shape[0]
    assert covered == n
    sample = torch.randint(0, n, (8,))
    expected = (x[sample, None, :] - y[None, :, :]).pow(2).sum(2).min(1).values
    assert_close(row_min[sample], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["euclidean", "cosine", "snr"])
def test_farness_orders_like_gap(kind):
    distance = DISTANCES.create(kind)
    p, n = torch.rand(6), torch.rand(6)
    assert_close(distance.farness(p) - distance.farness(n), distance.gap(p, n))


@pytest.mark.parametrize("name", DISTANCES.names())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_inputs_get_the_float32_distances_of_their_values(name, dtype):
    # Near each other and far from the origin: ‖x‖² + ‖y‖² − 2xᵀy in 16 bits was all round-off; squares of norms
    # beyond 256 overflowed float16 (NaN distances).
    dist = DISTANCES.create(name, chunk_size=5)
    for x in (8 + 0.05 * torch.randn(12, 8), 300 * torch.randn(12, 8)):
        x16 = x.to(dtype).requires_grad_(True)
        values = dist.pairwise(x16)
        assert values.dtype == torch.float32
        assert_close(values, dist.pairwise(x16.detach().float()), rtol=1e-4, atol=1e-4)
        assert_close(dist.paired(x16, x16.flip(0)), dist.paired(x16.detach().float(), x16.detach().float().flip(0)),
                     rtol=1e-4, atol=1e-4)
        assert torch.isfinite(torch.autograd.grad(values.sum(), x16)[0]).all()


@pytest.mark.parametrize("name", DISTANCES.names())
def test_autocast_does_not_run_distances_in_16_bits(name):
    x, y = 8 + 0.05 * torch.randn(12, 8), 8 + 0.05 * torch.randn(7, 8)
    dist = DISTANCES.create(name, chunk_size=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values, paired = dist.pairwise(x, y), dist.paired(x, y[:1].expand(12, 8))
        blocks = []
        for rows, block in dist.iter_pairwise(x, y):
            assert torch.is_autocast_enabled("cpu")  # the caller's autocast between the blocks
            blocks.append(block)
    assert_close(values, dist.pairwise(x, y))
    assert_close(torch.cat(blocks), values)
    assert_close(paired, dist.paired(x, y[:1].expand(12, 8)))


@pytest.mark.parametrize("name", DISTANCES.names())
def test_inputs_of_two_dtypes_are_promoted(name):
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.randn(3, 6)
    dist = DISTANCES.create(name)
    values = dist.pairwise(x.half(), y)
    assert values.dtype == torch.float32
    assert_close(values, dist.pairwise(x.half().float(), y))
    assert dist.pairwise(x, y).dtype == torch.float64


def test_snr_is_scale_invariant_for_small_embeddings():
    # The signal power was floored at a fixed eps: an anchor of squared spread below 1.2e-7 counted as constant.
    x, y = torch.randn(3, 8), torch.randn(4, 8)
    for scale in (1e-8, 1e-4, 1e4):
        assert_close(SNRDistance().pairwise(scale * x, scale * y), SNRDistance().pairwise(x, y), rtol=1e-4, atol=0)
        assert_close(SNRDistance().paired(scale * x, scale * y[:3]), SNRDistance().paired(x, y[:3]), rtol=1e-4, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("constant", [3.0, 0.1])  # a row of 0.1s has a mean that is not 0.1 in float32/float64
def test_snr_of_a_constant_or_zero_anchor_is_the_largest_distance_without_gradient(dtype, constant):
    anchors = torch.stack([torch.full((8,), constant), torch.zeros(8)]).to(dtype).requires_grad_(True)
    others = torch.cat([torch.randn(3, 8), torch.full((1, 8), 5.0)]).to(dtype).requires_grad_(True)
    values = SNRDistance().pairwise(anchors, others)
    largest = 1 / torch.finfo(values.dtype).eps
    assert_close(values, torch.tensor([[largest] * 3 + [0.0]] * 2))  # 0: a constant row, no noise either
    grads = torch.autograd.grad(values.sum() + SNRDistance().paired(anchors, others[:2]).sum(), (anchors, others))
    assert all(torch.isfinite(g).all() for g in grads)  # float16: no 1/eps gradient to overflow it


@pytest.mark.parametrize("name", DISTANCES.names())
def test_integer_inputs_and_inputs_on_two_devices_raise_clear_errors(name):
    dist = DISTANCES.create(name)
    with pytest.raises(TypeError, match="x must be a floating-point tensor, got torch.int64"):
        dist.pairwise(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="y must be a floating-point tensor"):
        dist.paired(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"y must be on the device of x \(cpu\), got meta"):
        dist.pairwise(torch.ones(2, 3), torch.ones(2, 3, device="meta"))
