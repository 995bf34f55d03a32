"""Proximity-to-representative regulariser (Can, Gürbüz, Alatan, ICIP 2021): pull each sample of a batch
towards its class representative in the batch (see ``ClassRepresentativeBatchSampler``)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from metric._checks import check_labelled_embeddings, check_same_device, check_same_size, check_shape
from metric.distances.base_distance import BaseDistance, at_least_float32
from metric.distances.euclidean import EuclideanDistance
from metric.reduction import Reduction, check_reduction, reduce_loss
from metric.registry import LOSSES


def representative_proximity_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    representative_mask: torch.Tensor,
    distance: Optional[BaseDistance] = None,
) -> torch.Tensor:
    """Per-sample losses (M,): for each non-representative sample whose class has a representative in the
    batch, its distance to that representative under ``distance`` (default Euclidean; for a similarity, minus
    the similarity, for cosine −cos, i.e. 1 − cos up to a constant). Samples of classes without a representative are
    left out; gradients reach both the sample and the representative.

    ``embeddings (N, D)``, ``labels (N,)``, ``representative_mask (N,)`` bool (at most one per class).
    """
    n = check_labelled_embeddings(embeddings, labels)
    check_same_size(n, check_shape(representative_mask, ["N"], "representative_mask")["N"],
                    "embeddings and representative_mask")
    if representative_mask.dtype != torch.bool:
        raise TypeError("representative_mask must be a bool tensor")
    check_same_device(embeddings, representative_mask, "embeddings", "representative_mask")
    distance = EuclideanDistance() if distance is None else distance
    representatives = representative_mask.nonzero(as_tuple=True)[0]
    if torch.unique(labels[representatives]).numel() != representatives.numel():
        raise ValueError("representative_mask marks more than one representative of a class")
    # (N, R) has at most one True per row: each sample's representative, if its class has one.
    samples, column = (labels.unsqueeze(1) == labels[representatives].unsqueeze(0)).nonzero(as_tuple=True)
    pulled = ~representative_mask[samples]
    samples, targets = samples[pulled], representatives[column[pulled]]
    embeddings = at_least_float32(embeddings)  # a representative's gradient sums over its class: not in 16 bits
    values = distance.paired(embeddings[samples], embeddings[targets])
    return distance.farness(values)


@LOSSES.register("representative_proximity")
class RepresentativeProximityLoss(nn.Module):
    """``forward(embeddings (N, D), labels (N,), representative_mask (N,)) → loss``:
    :func:`representative_proximity_loss` reduced by ``reduction`` (``mean``: the mean distance).

    A similarity (e.g. cosine) with ``reduction="mean_nonzero"`` is refused: its losses −cos are below 0 for
    every sample within 90° of its representative, so that mean would keep only the samples farther away."""

    def __init__(self, distance: Optional[BaseDistance] = None, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.distance = EuclideanDistance() if distance is None else distance
        if self.distance.is_inverted and reduction == "mean_nonzero":
            raise ValueError(
                f"reduction 'mean_nonzero' with the similarity {type(self.distance).__name__} (distance) would "
                "average only the samples more than 90° from their representative (the others' losses −cos are "
                "< 0): use reduction 'mean' or a distance such as EuclideanDistance"
            )
        self.reduction = reduction

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, representative_mask: torch.Tensor
    ) -> torch.Tensor:
        losses = representative_proximity_loss(embeddings, labels, representative_mask, self.distance)
        return reduce_loss(losses, self.reduction)
