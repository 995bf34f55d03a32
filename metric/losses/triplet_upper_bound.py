"""Upper bound of the triplet loss through fixed class centroids (Do, Tran, Reid, Kumar, Hoang, Carneiro,
CVPR 2019): linear in the batch size, cost O(N·C·D), no triplet is ever formed.

Derivation (squared Euclidean distances, e_ik = ‖x_i − c_k‖², n_k samples of class k in a batch of N). The
valid triplets are T = {(a, p, n) : a ≠ p, y_p = y_a, y_n ≠ y_a}, |T| = Σ_k n_k (n_k − 1) (N − n_k), and the
triplet loss is ℓ = [‖a − p‖² − ‖a − n‖² + m]₊. Three inequalities:

1. ‖a − p‖² ≤ 2 e_{a,y_a} + 2 e_{p,y_a}                  (‖u + v‖² ≤ 2‖u‖² + 2‖v‖², u = a − c, v = c − p);
2. e_{a,y_n} ≤ 2‖a − n‖² + 2 e_{n,y_n}, i.e. ‖a − n‖² ≥ ½ e_{a,y_n} − e_{n,y_n}  (the same, through c_{y_n});
3. [u + v]₊ ≤ [u]₊ + v for v ≥ 0.

Hence ℓ(a, p, n) ≤ h_{a,y_n} + 2 e_{p,y_p} + e_{n,y_n} with h_ik = [2 e_{i,y_i} − ½ e_ik + m]₊. Summing over T,
each sample i appears as an anchor (n_{y_i} − 1)·n_k times against class k, as a positive
(n_{y_i} − 1)(N − n_{y_i}) times and as a negative Σ_{j≠y_i} n_j (n_j − 1) times, so

    Σ_T ℓ ≤ Σ_i  (n_{y_i} − 1) Σ_{k≠y_i} n_k h_ik
               + [2 (n_{y_i} − 1)(N − n_{y_i}) + Σ_{j≠y_i} n_j (n_j − 1)] e_{i,y_i}.

:func:`triplet_upper_bound_loss` returns the i-th summand divided by |T|: the **sum** of its output bounds the
**mean** triplet loss over all valid triplets of the batch (hence ``reduction="sum"`` in the module). The bound
holds for any centroids; mutually equidistant ones make it tight where it matters: with every sample on its
centroid it equals [m − ½δ²]₊, which is 0 (the triplet loss too) when the centroid distance δ satisfies
δ² ≥ 2m. With no valid triplet (|T| = 0) every term is 0.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from metric._checks import check_finite, check_same_size, check_shape
from metric.distances.euclidean import pairwise_squared_euclidean
from metric.losses.base_loss import BaseMetricLoss
from metric.reduction import Reduction
from metric.registry import LOSSES


def fixed_centroids(
    num_classes: int, dim: int, scale: float = 1.0, dtype: Optional[torch.dtype] = None
) -> torch.Tensor:
    """(C, D) vertices of a regular simplex centred at the origin, each at distance ``scale`` from it (C ≥ 2),
    so every two centroids are ``scale·sqrt(2C / (C − 1))`` apart. One class gives the origin.

    Built (in float64, returned in ``dtype``, default torch's) from the Helmert basis of the plane Σ_k x_k = 0:
    deterministic; coordinates beyond C − 1 are 0.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if dim < num_classes - 1:
        raise ValueError(
            f"{num_classes} mutually equidistant centroids span a regular simplex of dimension {num_classes - 1}, "
            f"so the embedding size must be >= {num_classes - 1}, got {dim}"
        )
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    centroids = torch.zeros(num_classes, dim, dtype=torch.float64)
    for k in range(1, num_classes):
        # Helmert row k: (1, ..., 1, −k, 0, ...) / sqrt(k(k+1)), orthonormal and orthogonal to (1, ..., 1).
        norm = math.sqrt(k * (k + 1))
        centroids[:k, k - 1] = 1.0 / norm
        centroids[k, k - 1] = -k / norm
    # Vertex i is column i of the Helmert rows: all at distance sqrt((C − 1)/C) from the origin.
    if num_classes > 1:
        centroids *= scale / math.sqrt((num_classes - 1) / num_classes)
    return centroids.to(torch.get_default_dtype() if dtype is None else dtype)


def centroid_distance(num_classes: int, scale: float) -> float:
    """Distance between two of the ``fixed_centroids(num_classes, dim, scale)`` (C ≥ 2)."""
    return scale * math.sqrt(2 * num_classes / (num_classes - 1))


def triplet_upper_bound_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, margin: float
) -> torch.Tensor:
    """(N,) per-sample terms whose sum bounds the mean triplet loss [‖a−p‖² − ‖a−n‖² + margin]₊ over all valid
    triplets of the batch (squared Euclidean distances, embedding units²). See the module docstring.

    ``embeddings`` (N, D), integer ``labels`` (N,) in [0, C), ``centroids`` (C, D). Cost O(N·C·D).
    """
    sizes = check_shape(embeddings, ["N", "D"], "embeddings")
    n, d = sizes["N"], sizes["D"]
    check_shape(labels, ["N"], "labels")
    check_same_size(n, labels.shape[0], "embeddings and labels")
    num_classes = check_shape(centroids, ["C", str(d)], "centroids")["C"]
    check_finite(embeddings, "embeddings")
    if labels.is_floating_point():
        raise TypeError("labels must be an integer tensor")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}) (one centroid per class), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    centroids = centroids.to(embeddings)
    counts = torch.bincount(labels, minlength=num_classes).to(embeddings.dtype)  # n_k
    to_centroids = pairwise_squared_euclidean(embeddings, centroids)  # e_ik, (N, C)
    to_own = to_centroids.gather(1, labels.unsqueeze(1)).squeeze(1)  # e_{i,y_i}
    own_count = counts[labels]
    hinge = (2 * to_own.unsqueeze(1) - 0.5 * to_centroids + margin).clamp(min=0)
    negatives = counts.expand(n, num_classes).scatter(1, labels.unsqueeze(1), 0.0)  # n_k, 0 for k = y_i
    as_anchor = (own_count - 1) * (hinge * negatives).sum(1)
    pairs = counts * (counts - 1)  # ordered positive pairs per class
    pull = 2 * (own_count - 1) * (n - own_count) + (pairs.sum() - pairs[labels])
    num_triplets = (pairs * (n - counts)).sum()
    return (as_anchor + pull * to_own) / num_triplets.clamp(min=1)


@LOSSES.register("triplet_upper_bound")
class TripletUpperBoundLoss(BaseMetricLoss):
    """Triplet upper bound with fixed, mutually equidistant centroids (a buffer, never learned).

    ``scale`` is the centroids' distance from the origin (1: on the unit sphere, for L2-normalised embeddings).
    With the default ``reduction="sum"`` the loss is the bound on the mean triplet loss of the batch.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        margin: float = 0.2,
        scale: float = 1.0,
        reduction: Reduction = "sum",
    ) -> None:
        super().__init__(reduction)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (a triplet needs two classes), got {num_classes}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        if centroid_distance(num_classes, scale) ** 2 < 2 * margin:
            raise ValueError(
                f"centroids {centroid_distance(num_classes, scale):.4g} apart (scale {scale}) are too close for margin "
                f"{margin}: the bound can only reach 0 when distance² >= 2·margin; raise scale or lower margin"
            )
        self.margin = margin
        self.register_buffer("centroids", fixed_centroids(num_classes, embedding_size, scale))

    def compute_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return triplet_upper_bound_loss(embeddings, labels, self.centroids, self.margin)
