"""Audit s12 of metric/: loss dtypes with tensor settings, tie-exact Euclidean distances of integer embeddings,
the triplet upper bound at huge norms, SNR distances at tiny norms."""
from __future__ import annotations

import pytest
import torch

from metric.distances import CosineSimilarity, EuclideanDistance, SNRDistance
from metric.losses import (SoftTripleLoss, TripletMarginLoss, TripletUpperBoundLoss, soft_triple_loss,
                           triplet_upper_bound_loss)
from metric.miners import BatchAllMiner, BatchHardMiner, SemiHardMiner
from tests.helpers import assert_close
from tests.reference import triplet as ref

LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


@pytest.mark.parametrize("embedding_dtype", [torch.float16, torch.float32])
def test_triplet_loss_follows_the_embeddings_not_a_float64_class_margins(embedding_dtype):
    """A float64 ``class_margins`` made the loss of float32 embeddings float64 (float32 for 16-bit ones, the dtype
    their distances are computed in)."""
    emb = torch.randn(8, 4).to(embedding_dtype)
    margins = torch.full((4, 4), 0.3, dtype=torch.float64)
    loss = TripletMarginLoss(class_margins=margins, reduction="none")(emb, LABELS)
    assert loss.dtype == torch.float32
    plain = TripletMarginLoss(margin=0.3, reduction="none")(emb, LABELS)
    assert_close(loss, plain)


def test_soft_triple_loss_follows_the_embeddings_not_float64_centres():
    emb = torch.randn(8, 4)
    centres = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    losses, _ = soft_triple_loss(emb, LABELS, centres, 4, 2)
    assert losses.dtype == torch.float32
    losses.sum().backward()
    assert centres.grad.dtype == torch.float64 and bool(centres.grad.isfinite().all())
    module = SoftTripleLoss(4, 4, centers_per_class=2).double()
    assert module(emb, LABELS).dtype == torch.float32
    assert_close(module(emb, LABELS), module(emb.double(), LABELS).float())


@pytest.mark.parametrize("squared", [True, False])
def test_batch_hard_ties_of_integer_embeddings_go_to_the_smaller_index(squared):
    """The mean-row shift made the distances of integer embeddings inexact (batch of 24: mean k/24), so equally
    hard positives/negatives were told apart by round-off instead of the documented "smaller index wins"."""
    miner = BatchHardMiner(EuclideanDistance(squared=squared))
    for seed in range(12):
        torch.manual_seed(seed)
        emb = torch.randint(-3, 4, (24, 8)).float()
        labels = torch.arange(24) % 3
        exact = ref.pairwise(emb, emb, "squared_euclidean")
        assert torch.equal(EuclideanDistance(squared=True).pairwise(emb), exact.float())
        assert [tuple(t) for t in zip(*(x.tolist() for x in miner(emb, labels)))] == ref.batch_hard(
            emb, labels, "squared_euclidean")


def test_margin_miners_on_integer_embeddings_match_naive_loops_at_the_boundaries():
    """Integer embeddings with integer margins put many gaps exactly on a miner's bounds: round-off decided them
    (semi-hard and batch-all kept or dropped boundary triplets against the naive loops, and the loss summed from
    the pair counts differed from the loss of the listed triplets)."""
    distance = EuclideanDistance(squared=True)
    for seed in range(0, 30, 3):
        torch.manual_seed(seed)
        n = int(torch.randint(3, 26, ()))
        emb, labels = torch.randint(-2, 3, (n, 5)).float(), torch.randint(0, 4, (n,))
        for margin in (2.0, 4.0):
            semi_hard = SemiHardMiner(margin, distance)
            assert sorted(zip(*(t.tolist() for t in semi_hard(emb, labels)))) == sorted(
                ref.semi_hard(emb, labels, "squared_euclidean", margin))
            assert sorted(zip(*(t.tolist() for t in BatchAllMiner(distance, margin)(emb, labels)))) == sorted(
                ref.batch_all(emb, labels, "squared_euclidean", margin))
            loss = TripletMarginLoss(margin, distance, miner=semi_hard, reduction="mean_nonzero")
            assert_close(loss(emb, labels), loss(emb, labels, semi_hard(emb, labels)))


def test_distances_of_non_integer_embeddings_keep_the_mean_shift():
    """Far from the origin (ReLU features of norm ~200 that differ by 0.1) the shift still removes the round-off."""
    emb = 50 + 0.05 * torch.randn(16, 16)
    exact = ref.pairwise(emb.double(), emb.double(), "euclidean")
    assert_close(EuclideanDistance().pairwise(emb).double(), exact, atol=2e-4, rtol=1e-4)


def _upper_bound_terms(scale_exponent: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    emb = (torch.randn(32, 4) * 2.0**scale_exponent).to(dtype).requires_grad_()
    terms = TripletUpperBoundLoss(4, 4, reduction="none").to(dtype)(emb, torch.arange(32) % 4)
    terms.sum().backward()
    return terms.detach(), emb.grad


@pytest.mark.parametrize("scale_exponent", [0, 63])
def test_triplet_upper_bound_at_huge_norms_matches_float64(scale_exponent):
    """Norms ~1.8e19 (2⁶³·randn): the squares overflowed float32 and gave NaN terms whose value is ~3e37; the
    terms are now those of float64, and at normal scale unchanged."""
    terms, grad = _upper_bound_terms(scale_exponent, torch.float32)
    expected, expected_grad = _upper_bound_terms(scale_exponent, torch.float64)
    assert bool(terms.isfinite().all()) and bool(grad.isfinite().all())
    assert_close(terms.double(), expected, rtol=1e-5, atol=1e-6 * 4.0**scale_exponent)
    assert_close(grad.double(), expected_grad, rtol=1e-4, atol=1e-5 * 2.0**scale_exponent)


def test_triplet_upper_bound_beyond_the_float32_range_is_inf_not_nan():
    torch.manual_seed(0)
    loss = TripletUpperBoundLoss(4, 4)(torch.randn(8, 4) * 2.0**64, LABELS)
    assert loss.item() == float("inf")


@pytest.mark.parametrize("tiny", [1e-30, 1e-42])
def test_snr_distances_are_scale_invariant_at_tiny_norms(tiny):
    """Rows of norm ~1e-30: the squared spreads underflowed float32, so every distance was 0 and the gradients NaN
    (1e-42 is subnormal)."""
    torch.manual_seed(0)
    emb = torch.randn(5, 4)
    small = (emb * tiny).requires_grad_()
    pairwise = SNRDistance().pairwise(small)
    paired = SNRDistance().paired(small, small.flip(0))
    assert_close(pairwise, SNRDistance().pairwise(emb), rtol=1e-4 if tiny > 1e-40 else 0.05, atol=1e-5)
    assert_close(paired, SNRDistance().paired(emb, emb.flip(0)), rtol=1e-4 if tiny > 1e-40 else 0.05, atol=1e-5)
    if tiny > 1e-40:  # the gradient, ~1/norm, is beyond float32 for subnormal rows
        (pairwise.sum() + paired.sum()).backward()
        assert bool(small.grad.isfinite().all()) and bool((small.grad != 0).any())


def test_snr_of_zero_rows_and_empty_inputs():
    zero = torch.zeros(3, 4, requires_grad=True)
    assert torch.equal(SNRDistance().pairwise(zero), torch.zeros(3, 3))
    SNRDistance().pairwise(zero).sum().backward()
    assert bool(zero.grad.isfinite().all())
    assert SNRDistance().pairwise(torch.randn(2, 4), torch.randn(0, 4)).shape == (2, 0)


def test_snr_refuses_one_dimensional_embeddings():
    """With D = 1 every row is its own mean: no signal, no noise, and every SNR distance was silently 0."""
    with pytest.raises(ValueError, match=r"SNR distances need embeddings of size D >= 2, got shape \(3, 1\)"):
        SNRDistance().pairwise(torch.randn(3, 1))
    with pytest.raises(ValueError, match="D >= 2"):
        SNRDistance().paired(torch.randn(3, 1), torch.randn(3, 1))


def test_triplet_upper_bound_names_non_finite_centroids():
    """Given centroids with NaN gave a NaN loss without a word."""
    with pytest.raises(ValueError, match="centroids holds 8 NaN/Inf"):
        triplet_upper_bound_loss(torch.randn(4, 4), torch.tensor([0, 0, 1, 1]), torch.full((2, 4), float("nan")), 0.2)


def test_cosine_at_tiny_norms_is_finite_with_finite_gradients():
    """Rows of norm below F.normalize's 1e-12 floor read as nearly zero rows (as in pytorch-metric-learning):
    similarities near 0, but finite, and so are the gradients."""
    small = (torch.randn(5, 4) * 1e-30).requires_grad_()
    values = CosineSimilarity().pairwise(small)
    (values.sum() + CosineSimilarity().paired(small, small.flip(0)).sum()).backward()
    assert bool(values.isfinite().all()) and float(values.detach().abs().max()) < 1e-30
    assert bool(small.grad.isfinite().all())
