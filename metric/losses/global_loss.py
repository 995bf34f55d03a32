"""Global loss (Kumar BG, Carneiro, Reid, CVPR 2016): shrink the spread of the positive and negative distance
distributions of a batch and keep their means apart. Used with smart mining (Harwood et al., ICCV 2017)."""
from __future__ import annotations

from typing import Optional

import torch

from metric._checks import check_finite, check_finite_number, check_same_size, check_shape
from metric.distances.base_distance import BaseDistance
from metric.distances.euclidean import EuclideanDistance
from metric.losses.base_loss import BaseMetricLoss
from metric.losses.triplet_margin_loss import triplet_distances
from metric.miners.base_miner import BaseTripletMiner, TripletIndices, check_triplet_indices
from metric.miners.batch_all import BatchAllMiner
from metric.registry import LOSSES


def _check_settings(margin: float, lam: float) -> None:
    """Raise ``ValueError`` unless ``margin`` is finite and ``lam`` finite and >= 0 (naming the setting)."""
    check_finite_number(margin, "margin")
    check_finite_number(lam, "lam")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")


def global_loss(
    d_pos: torch.Tensor, d_neg: torch.Tensor, margin: float, lam: float, is_inverted: bool = False
) -> torch.Tensor:
    """(σ²₊ + σ²₋) + λ·max(0, μ₊ − μ₋ + t) → scalar, from the (T,) anchor–positive and
    anchor–negative distances of T triplets (μ mean, σ² population variance: 0 for one triplet).

    With ``is_inverted`` the inputs are similarities and the hinge is max(0, μ₋ − μ₊ + t). No triplet gives 0,
    still attached to the inputs' graph.

    The distances are taken as given, not normalised: squared distances of unit-norm embeddings lie in [0, 4].
    A convention that divides them by c (e.g. c = 4 to bring those into [0, 1]) with settings t and λ is this loss
    with ``margin`` c·t and ``lam`` c·λ, divided by c².
    """
    _check_settings(margin, lam)
    t = check_shape(d_pos, ["T"], "d_pos")["T"]
    check_same_size(t, check_shape(d_neg, ["T"], "d_neg")["T"], "d_pos and d_neg")
    check_finite(d_pos, "d_pos")
    check_finite(d_neg, "d_neg")
    if t == 0:
        return d_pos.sum() + d_neg.sum()
    spread = d_pos.var(correction=0) + d_neg.var(correction=0)
    gap = d_neg.mean() - d_pos.mean() if is_inverted else d_pos.mean() - d_neg.mean()
    return spread + lam * torch.relu(gap + margin)


@LOSSES.register("global")
class GlobalLoss(BaseMetricLoss):
    """``forward(embeddings (N, D), labels (N,), triplets=None) → scalar``: :func:`global_loss` over the given
    triplets (e.g. from smart mining), or over those ``miner`` finds (default: all valid triplets). The means and
    variances are over the triplets (the paper's batches are triplets, one d⁺ and one d⁻ each): a pair in several
    triplets counts once per triplet. All valid triplets of a batch of P classes × K samples hold every ordered
    positive pair K·(P − 1) times and every negative pair K − 1 times, so there they are the pairs' distributions.

    ``distance`` defaults to squared Euclidean, as in the paper (on L2-normalised embeddings).
    """

    def __init__(
        self,
        distance: Optional[BaseDistance] = None,
        margin: float = 0.4,
        lam: float = 0.8,
        miner: Optional[BaseTripletMiner] = None,
    ) -> None:
        super().__init__()  # the loss is one value per batch: there is nothing to reduce
        _check_settings(margin, lam)
        self.distance = EuclideanDistance(squared=True) if distance is None else distance
        self.miner = BatchAllMiner(distance=self.distance) if miner is None else miner
        self.margin = margin
        self.lam = lam

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, triplets: Optional[TripletIndices] = None
    ) -> torch.Tensor:
        self.check_inputs(embeddings, labels)
        return self.compute_loss(embeddings, labels, triplets)

    def compute_loss(
        self, embeddings: torch.Tensor, labels: torch.Tensor, triplets: Optional[TripletIndices] = None
    ) -> torch.Tensor:
        if triplets is None:
            triplets = self.miner(embeddings, labels)
        triplets = check_triplet_indices(triplets, embeddings.shape[0])
        d_pos, d_neg = triplet_distances(embeddings, triplets, self.distance)
        return global_loss(d_pos, d_neg, self.margin, self.lam, self.distance.is_inverted)
