"""SoftTriple loss (Qian et al., ICCV 2019): K learned centres per class, a soft max over them, and a
regulariser that merges redundant centres of a class."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from metric._checks import (check_built_size, check_class_ids, check_count, check_finite, check_finite_number,
                            check_labelled_embeddings, check_same_device, check_shape)
from metric.distances.base_distance import at_least_float32, computing_dtype, no_autocast
from metric.distances.cosine import CosineSimilarity
from metric.losses.base_loss import BaseMetricLoss
from metric.reduction import Reduction
from metric.registry import LOSSES

# Inside the regulariser's square roots, as in the official code: keeps the gradient finite for equal centres.
_SQRT_EPS = 1e-5


def soft_triple_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    centers: torch.Tensor,
    num_classes: int,
    centers_per_class: int,
    la: float = 20.0,
    gamma: float = 0.1,
    margin: float = 0.01,
    tau: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample SoftTriple losses (N,) and the τ-weighted centre regulariser (a scalar, 0 when K = 1).

    ``embeddings`` (N, D) and ``centers`` (D, C·K) are L2-normalised here (column c·K + k is centre k of class
    c, the layout of the official code and pytorch-metric-learning). With s_ick the cosine similarity of sample
    i and centre k of class c, S_ic = Σ_k softmax_k(s_ick / γ)·s_ick and the loss is the cross-entropy of
    λ·(S_i − δ·onehot(y_i)); the regulariser is
    τ·Σ_c Σ_{t<s} sqrt(2 + ε − 2 w_csᵀw_ct) / (C·K·(K − 1)).
    """
    _check_hyperparameters(la, gamma, tau, margin)
    check_labelled_embeddings(embeddings, labels)
    check_shape(centers, [str(embeddings.shape[1]), str(num_classes * centers_per_class)], "centers")
    check_same_device(embeddings, centers, "embeddings", "centers")
    check_finite(centers, "centers")
    labels = check_class_ids(labels, num_classes, f"{centers_per_class} centres per class")
    # centres in the embeddings' computing dtype: float64 centres made the loss float64 for float32 embeddings
    similarities = CosineSimilarity().pairwise(embeddings, centers.T.to(computing_dtype(embeddings.dtype)))
    similarities = similarities.view(-1, num_classes, centers_per_class)
    class_similarity = (F.softmax(similarities / gamma, dim=2) * similarities).sum(2)  # S_ic, (N, C)
    logits = la * (class_similarity - margin * F.one_hot(labels, num_classes).to(class_similarity.dtype))
    losses = F.cross_entropy(logits, labels, reduction="none")
    return losses, tau * center_merging_regularizer(centers, num_classes, centers_per_class)


def _check_hyperparameters(la: float, gamma: float, tau: float, margin: float) -> None:
    """Raise ``ValueError`` naming the setting unless ``la``, ``gamma`` > 0 and ``tau``, ``margin`` >= 0, all finite
    (la < 0 or tau < 0 would reverse its term, NaN or Inf make the loss NaN)."""
    for name, value, positive in (("la", la, True), ("gamma", gamma, True), ("tau", tau, False),
                                  ("margin", margin, False)):
        if not (value > 0 if positive else value >= 0):  # NaN too
            raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}")
        check_finite_number(value, name)


def center_merging_regularizer(centers: torch.Tensor, num_classes: int, centers_per_class: int) -> torch.Tensor:
    """Σ_c Σ_{t<s} sqrt(2 + ε − 2 w_csᵀw_ct) / (C·K·(K − 1)) over the L2-normalised centres (D, C·K):
    small when a class's centres coincide, so τ times it lets redundant centres merge (0 for K = 1)."""
    if centers_per_class < 2:
        return centers.new_zeros(())
    with no_autocast(centers):  # in 16 bits 2 + ε − 2·cos rounds to 0 or below for merged centres: NaN gradient
        w = F.normalize(at_least_float32(centers), dim=0).T.reshape(num_classes, centers_per_class, -1)
        upper = torch.triu_indices(centers_per_class, centers_per_class, offset=1, device=centers.device)
        cosines = (w @ w.transpose(1, 2))[:, upper[0], upper[1]]
        normaliser = num_classes * centers_per_class * (centers_per_class - 1)  # as the official code
        return torch.sqrt(2.0 + _SQRT_EPS - 2.0 * cosines).sum() / normaliser


@LOSSES.register("soft_triple")
class SoftTripleLoss(BaseMetricLoss):
    """SoftTriple with its centres as a learned Parameter ``centers`` (D, C·K).

    Each sample's loss carries the centre regulariser too, so the ``mean`` reduction is the official objective
    (mean cross-entropy + τ·regulariser). The official code trains the centres with a larger learning rate
    (1e-2) than the network: pass ``loss.param_groups()`` to the optimiser beside the model's parameters.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        centers_per_class: int = 10,
        la: float = 20.0,
        gamma: float = 0.1,
        tau: float = 0.2,
        margin: float = 0.01,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(reduction)
        for name, value in (("num_classes", num_classes), ("embedding_size", embedding_size),
                            ("centers_per_class", centers_per_class)):
            check_count(value, 1, name)
        num_classes, embedding_size, centers_per_class = int(num_classes), int(embedding_size), int(centers_per_class)
        _check_hyperparameters(la, gamma, tau, margin)
        self.num_classes = num_classes
        self.centers_per_class = centers_per_class
        self.la, self.gamma, self.tau, self.margin = la, gamma, tau, margin
        self.centers = nn.Parameter(torch.empty(embedding_size, num_classes * centers_per_class))
        nn.init.kaiming_uniform_(self.centers, a=math.sqrt(5))  # the official initialisation

    def param_groups(self, lr: float = 1e-2) -> list[dict]:
        """Optimiser parameter groups for the centres, e.g.
        ``torch.optim.Adam([{"params": model.parameters()}, *loss.param_groups()], lr=1e-4)``."""
        return [{"params": [self.centers], "lr": lr}]

    def compute_loss(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_built_size(embeddings, self.centers.shape[0])
        losses, regularizer = soft_triple_loss(
            embeddings, labels, self.centers, self.num_classes, self.centers_per_class,
            la=self.la, gamma=self.gamma, margin=self.margin, tau=self.tau,
        )
        return losses + regularizer
