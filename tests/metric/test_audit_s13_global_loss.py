"""Audit s13 of metric/: the global loss (Kumar BG et al. 2016) of raw embeddings against loops over all valid
triplets, in its distance and similarity forms, and its documented conventions (triplet-weighted distributions,
unnormalised distances)."""
from __future__ import annotations

import math

import pytest
import torch

from metric.distances import CosineSimilarity
from metric.losses import GlobalLoss, global_loss

LABELS = [0, 0, 0, 1, 1, 2, 2, 2, 2]  # unbalanced: pairs sit in different numbers of triplets


def naive_global_loss(x: list[list[float]], labels: list[int], margin: float, lam: float, kind: str) -> float:
    """(σ²₊ + σ²₋) + λ·max(0, μ₊ − μ₋ + t) (distances) or λ·max(0, μ₋ − μ₊ + t) (similarities) over every valid
    triplet (a, p, n), a ≠ p, by loops; population variances."""
    def score(u: list[float], v: list[float]) -> float:
        if kind == "squared":
            return sum((a - b) ** 2 for a, b in zip(u, v))
        return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))

    pos, neg = [], []
    for a in range(len(x)):
        for p in range(len(x)):
            for n in range(len(x)):
                if a != p and labels[p] == labels[a] and labels[n] != labels[a]:
                    pos.append(score(x[a], x[p]))
                    neg.append(score(x[a], x[n]))
    mu_pos, mu_neg = sum(pos) / len(pos), sum(neg) / len(neg)
    spread = sum((d - mu_pos) ** 2 for d in pos) / len(pos) + sum((d - mu_neg) ** 2 for d in neg) / len(neg)
    gap = mu_pos - mu_neg if kind == "squared" else mu_neg - mu_pos
    return spread + lam * max(0.0, gap + margin)


@pytest.mark.parametrize("margin,lam", [(0.4, 0.8), (3.0, 0.5), (0.0, 2.0)])
def test_global_loss_of_embeddings_matches_loops_over_all_triplets(margin, lam) -> None:
    x = torch.randn(len(LABELS), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor(LABELS)
    expected = naive_global_loss(x.tolist(), LABELS, margin, lam, "squared")
    assert GlobalLoss(margin=margin, lam=lam)(x, labels).item() == pytest.approx(expected, rel=1e-12)
    similarity = GlobalLoss(distance=CosineSimilarity(), margin=margin, lam=lam)(x, labels).item()
    assert similarity == pytest.approx(naive_global_loss(x.tolist(), LABELS, margin, lam, "cosine"), rel=1e-12)


def test_global_loss_of_distances_divided_by_c_is_the_documented_rescaling() -> None:
    """The docstring's mapping from a convention of distances divided by c (c = 4: squared distances of unit-norm
    embeddings in [0, 1]) to this loss's margin and lam."""
    g = torch.Generator().manual_seed(5)
    d_pos = 4 * torch.rand(20, dtype=torch.float64, generator=g)
    d_neg = 4 * torch.rand(20, dtype=torch.float64, generator=g)
    c, t, lam = 4.0, 0.4, 0.8
    normalised = global_loss(d_pos / c, d_neg / c, t, lam)
    assert normalised.item() == pytest.approx((global_loss(d_pos, d_neg, c * t, c * lam) / c**2).item(), rel=1e-12)


def test_global_loss_of_all_triplets_of_a_p_by_k_batch_is_that_of_the_pair_distributions() -> None:
    """The GlobalLoss docstring: with P classes × K samples every ordered positive pair is in K·(P − 1) triplets and
    every negative pair in K − 1, so the triplet-weighted distributions are those of the pairs."""
    labels = torch.arange(3).repeat_interleave(4)
    x = torch.randn(12, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    d = ((x[:, None] - x[None]) ** 2).sum(2)
    same, itself = labels[:, None] == labels[None], torch.eye(12, dtype=torch.bool)
    positives, negatives = d[same & ~itself], d[~same]
    by_pairs = positives.var(correction=0) + negatives.var(correction=0) + 0.8 * torch.relu(
        positives.mean() - negatives.mean() + 0.4)
    assert GlobalLoss()(x, labels).item() == pytest.approx(by_pairs.item(), rel=1e-12)
