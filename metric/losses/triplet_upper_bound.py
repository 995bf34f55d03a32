"""Upper bound of the triplet loss through fixed class centroids (Do, Tran, Reid, Kumar, Hoang, Carneiro,
CVPR 2019): linear in the batch size, cost O(N·C·D), no triplet is ever formed.

Derivation (squared Euclidean distances, e_ik = ‖x_i − c_k‖², n_k samples of class k in a batch of N). The
valid triplets are T = {(a, p, n) : a ≠ p, y_p = y_a, y_n ≠ y_a}, |T| = Σ_k n_k (n_k − 1) (N − n_k), and the
triplet loss is ℓ = [‖a − p‖² − ‖a − n‖² + m]₊. Three inequalities:

1. ‖a − p‖² ≤ 2 e_{a,y_a} + 2 e_{p,y_a}
   (‖u + v‖² ≤ 2‖u‖² + 2‖v‖², u = a − c, v = c − p);
2. e_{a,y_n} ≤ 2‖a − n‖² + 2 e_{n,y_n}, i.e. ‖a − n‖² ≥ ½ e_{a,y_n} − e_{n,y_n}
   (the same, through c_{y_n});
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

This differs on purpose from the paper's loss, which drops the hinge: Σ_i [e_{i,y_i} − (1/(2(C − 1)))
Σ_{k≠y_i} e_ik] plus margin/constant terms (its exact constants were not at hand). Keeping the hinge per (sample,
other class) costs the same O(N·C). The result is a bound with no constant added. It also stops pushing a sample
away from a centroid once the margin holds there; the linear form keeps rewarding that distance without limit.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch

from metric._checks import (check_built_size, check_class_ids, check_count, check_finite, check_finite_number,
                            check_labelled_embeddings, check_shape, is_integer)
from metric.distances.base_distance import at_least_float32, no_autocast, overflow_scale
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
    check_count(num_classes, 1, "num_classes")
    check_count(dim, 0, "the embedding size")
    if dim < num_classes - 1:
        raise ValueError(
            f"{num_classes} mutually equidistant centroids span a regular simplex of dimension {num_classes - 1}, "
            f"so the embedding size must be >= {num_classes - 1}, got {dim}"
        )
    if not 0 < scale < math.inf:  # NaN too
        raise ValueError(f"scale must be > 0 and finite, got {scale}")
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


def aligned_centroids(centroids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The orthogonal transform of ``centroids`` (C, D) nearest ``targets`` (C, D), e.g. the current class means:
    ``centroids @ Q`` with Q (D, D) orthogonal minimising ‖centroids·Q − targets‖_F (orthogonal Procrustes,
    Q = U Vᵀ from the SVD of centroidsᵀ·targets). Norms and mutual distances are those of ``centroids``, so a
    regular simplex stays one; it is only turned to where the classes already are. Computed in float64, returned
    in the dtype of ``centroids``."""
    sizes = check_shape(centroids, ["C", "D"], "centroids")
    check_shape(targets, [str(sizes["C"]), str(sizes["D"])], "targets")
    check_finite(targets, "targets")
    c, t = centroids.double(), targets.to(device=centroids.device, dtype=torch.float64)
    # In the row space of the centroids (cᵀ = q r): Procrustes there costs O(C²·D) instead of a D×D SVD.
    # c·Q = rᵀ·qᵀ·Q, and the optimal Q maps the row space by q·u·vh, so c·Q = rᵀ·u·vh.
    _, r = torch.linalg.qr(c.T)
    u, _, vh = torch.linalg.svd(r @ t, full_matrices=False)
    return (r.T @ u @ vh).to(centroids.dtype)


def centroid_distance(num_classes: int, scale: float) -> float:
    """Distance between two of the ``fixed_centroids(num_classes, dim, scale)`` (C ≥ 2)."""
    return scale * math.sqrt(2 * num_classes / (num_classes - 1))


class _BoundTerms(torch.autograd.Function):
    """(N, D) embeddings, (N,) labels, (C, D) centroids, margin → the (N,) bound terms of
    :func:`triplet_upper_bound_loss`, forward and backward written out in a few whole-matrix operations.

    With e_ik = ‖x_i − c_k‖², w_ik = n_k (0 for k = y_i), a_i = n_{y_i} − 1, b_i the pull coefficient and
    |T| the number of valid triplets, term_i = (a_i Σ_k w_ik h_ik + b_i e_{i,y_i}) / |T|,
    h_ik = [2 e_{i,y_i} − ½ e_ik + m]₊. Its derivatives in e are
    ∂term_i/∂e_ik = −½ a_i w_ik 1[h_ik > 0] / |T| (k ≠ y_i) and
    ∂term_i/∂e_{i,y_i} = (2 a_i Σ_k w_ik 1[h_ik > 0] + b_i) / |T|; through e,
    ∂/∂x_i = 2 (x_i Σ_k G_ik − Σ_k G_ik c_k) and ∂/∂c_k = 2 (c_k Σ_i G_ik − Σ_i G_ik x_i)
    for G = ∂L/∂e.
    At batch sizes of a few dozen the cost is the number of operations,
    not their size: autograd's graph of the same formula took about twice as long, forward and backward.
    The gradient is that of the exact squared distance (the forward's clamp of round-off negatives to 0 is not
    differentiated; the gradient there is ~0 anyway).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor,
                margin: float) -> torch.Tensor:
        n, num_classes = x.shape[0], centroids.shape[0]
        counts = torch.bincount(labels, minlength=num_classes).to(x.dtype)  # n_k
        rows = labels.unsqueeze(1)
        to_centroids = pairwise_squared_euclidean(x, centroids)  # e_ik, (N, C)
        to_own = to_centroids.gather(1, rows).squeeze(1)  # e_{i,y_i}
        own_count = counts[labels]
        pairs = counts * (counts - 1)  # ordered positive pairs per class
        num_triplets = (pairs * (n - counts)).sum().clamp_(min=1)
        # a_i w_ik / |T| with w_{i,y_i} = 0: the anchor weights, (N, C)
        anchor = counts.expand(n, num_classes).scatter(1, rows, 0.0).mul_(((own_count - 1) / num_triplets)[:, None])
        hinge = torch.add((2 * to_own + margin).unsqueeze(1), to_centroids, alpha=-0.5).relu_()  # h_ik
        pull = (2 * (own_count - 1) * (n - own_count) + (pairs.sum() - pairs[labels])) / num_triplets  # b_i / |T|
        ctx.save_for_backward(x, labels, centroids, anchor.mul_(hinge > 0), pull)
        return (anchor * hinge).sum(1).add_(pull * to_own)  # anchor is 0 where the hinge is: the same sum

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Optional[torch.Tensor], None, Optional[torch.Tensor], None]:
        x, labels, centroids, active, pull = ctx.saved_tensors
        own = (2 * active.sum(1) + pull).unsqueeze(1)  # ∂term_i/∂e_{i,y_i}
        g = active.mul(-0.5).scatter_(1, labels.unsqueeze(1), own).mul_(grad.unsqueeze(1))  # G = ∂L/∂e, (N, C)
        grad_x = grad_centroids = None
        if ctx.needs_input_grad[0]:  # 2 (x_i Σ_k G_ik − Σ_k G_ik c_k)
            grad_x = (x * (2 * g.sum(1, keepdim=True))).addmm_(g, centroids, alpha=-2)
        if ctx.needs_input_grad[2]:  # 2 (c_k Σ_i G_ik − Σ_i G_ik x_i)
            grad_centroids = (centroids * (2 * g.sum(0).unsqueeze(1))).addmm_(g.T, x, alpha=-2)
        return grad_x, None, grad_centroids, None


def _check_labels_and_centroids(embeddings: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor) -> None:
    """What :class:`BaseMetricLoss` does not check: one centroid of the embeddings' size per label."""
    num_classes = check_shape(centroids, ["C", str(embeddings.shape[1])], "centroids")["C"]
    check_class_ids(labels, num_classes, "one centroid per class")


def _check_margin(margin: float) -> None:
    """Raise ``ValueError`` unless ``margin`` is a finite number >= 0 (NaN or Inf would make every term NaN)."""
    if not margin >= 0:  # NaN too
        raise ValueError(f"margin must be >= 0, got {margin}")
    check_finite_number(margin, "margin")


def _bound_terms(
    embeddings: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, margin: float
) -> torch.Tensor:
    """The (N,) terms, in float32 at least and with autocast off (squared distances in 16 bits lose nearby
    samples to round-off). Inputs so large that squares would overflow (:func:`overflow_scale`) are divided by a
    power of two s, exactly: the terms are those of (x/s, c/s, m/s²) times s², so they overflow only where the
    bound itself is beyond the dtype's range (the squares' overflow gave NaN from norms of ~1e19 in float32)."""
    x = at_least_float32(embeddings)
    centroids = centroids.to(x)
    scale = max(overflow_scale(x, "embeddings", x.dtype), overflow_scale(centroids, "centroids", x.dtype))
    with no_autocast(x):
        if scale == 1.0:
            return _BoundTerms.apply(x, labels.long(), centroids, margin)  # gather: int64 ids
        terms = _BoundTerms.apply(x / scale, labels.long(), centroids / scale, margin / scale / scale)
        return terms * scale * scale  # twice: scale² alone may exceed the dtype's range


def triplet_upper_bound_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor, margin: float
) -> torch.Tensor:
    """(N,) per-sample terms whose sum bounds the mean triplet loss [‖a−p‖² − ‖a−n‖² + margin]₊ over
    all valid triplets of the batch (squared Euclidean distances, embedding units²). See the module docstring.

    ``embeddings`` (N, D), integer ``labels`` (N,) in [0, C), ``centroids`` (C, D). Cost O(N·C·D).
    """
    check_labelled_embeddings(embeddings, labels)
    _check_labels_and_centroids(embeddings, labels, centroids)
    _check_margin(margin)
    return _bound_terms(embeddings, labels, centroids, margin)


@LOSSES.register("triplet_upper_bound")
class TripletUpperBoundLoss(BaseMetricLoss):
    """Triplet upper bound with fixed, mutually equidistant centroids (a buffer, never learned: it follows the
    module's device, not a cast of it, so ``.half()`` leaves the simplex unrounded).

    ``scale`` is the centroids' distance from the origin (1: on the unit sphere, for L2-normalised embeddings).
    With the default ``reduction="sum"`` the loss is the bound on the mean triplet loss of the batch.
    """

    setting_buffers = ("centroids",)

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        margin: float = 0.2,
        scale: float = 1.0,
        reduction: Reduction = "sum",
    ) -> None:
        super().__init__(reduction)
        if not is_integer(num_classes) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2 (a triplet needs two classes), got {num_classes}")
        _check_margin(margin)
        if centroid_distance(num_classes, scale) ** 2 < 2 * margin:
            raise ValueError(
                f"centroids {centroid_distance(num_classes, scale):.4g} apart (scale {scale}) are too close for margin "
                f"{margin}: the bound can only reach 0 when distance² >= 2·margin; raise scale or lower margin"
            )
        self.margin = margin
        self.register_buffer("centroids", fixed_centroids(num_classes, embedding_size, scale))

    @torch.no_grad()
    def align_centroids(self, class_means: torch.Tensor) -> None:
        """Turn the fixed centroids (a rigid rotation/reflection: same scale, same mutual distances) to the
        orientation nearest ``class_means`` (C, D), e.g. the class means of the embeddings before training; see
        :func:`aligned_centroids`. Without it the simplex lies along the first C − 1 coordinate axes, an
        arbitrary place for a pretrained embedding, and the loss drags every class there."""
        self.centroids.copy_(aligned_centroids(self.centroids, class_means))

    def compute_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # The base class has checked the embeddings and labels: only the centroid-specific checks remain.
        check_built_size(embeddings, self.centroids.shape[1])
        _check_labels_and_centroids(embeddings, labels, self.centroids)
        return _bound_terms(embeddings, labels, self.centroids, self.margin)
