"""Hierarchical triplet loss (Ge, Huang, Dong, Scott, ECCV 2018): the triplet hinge with a dynamic violate
margin β + d_H(y_a, y_n) − s_{y_a} read from a class tree rebuilt from the data set's embeddings."""
from __future__ import annotations

from typing import Optional

import torch

from metric._checks import check_finite_number, check_shape
from metric.class_tree import ClassTree, check_num_levels, check_tree_distance
from metric.distances.base_distance import BaseDistance, computing_dtype
from metric.losses.triplet_margin_loss import TripletMarginLoss, triplet_margin_loss
from metric.miners.base_miner import BaseTripletMiner, TripletIndices
from metric.reduction import Reduction
from metric.registry import LOSSES


def class_tree_margins(
    tree: ClassTree, spreads: torch.Tensor, classes: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """(k, k) matrix d_H(a, n) − s_a between the given class labels (default all, in ``tree.classes`` order);
    ``spreads (C,)`` are the mean intra-class distances s_c in ``tree.classes`` order."""
    check_shape(spreads, [str(tree.num_classes)], "spreads")
    classes = tree.classes if classes is None else classes
    return tree.merge_matrix(classes) - spreads[tree.index_of(classes)].unsqueeze(1)


def hierarchical_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    triplets: TripletIndices,
    tree_margins: torch.Tensor,
    beta: float,
    distance: BaseDistance,
) -> torch.Tensor:
    """(T,) losses relu(d(a,p) − d(a,n) + β + tree_margins[y_a, y_n]) of T triplets of rows of ``embeddings``
    (N, D); ``labels (N,)`` index ``tree_margins (C, C)`` = d_H(y_a, y_n) − s_{y_a} (:func:`class_tree_margins`).
    The margin may be negative where a class spreads wider than its tree distance to the negative's class."""
    check_shape(tree_margins, ["C", "C"], "tree_margins")
    return triplet_margin_loss(embeddings, triplets, beta, distance, labels, class_margins=beta + tree_margins)


@LOSSES.register("hierarchical_triplet")
class HierarchicalTripletLoss(TripletMarginLoss):
    """``forward(embeddings (N, D), labels (N,), triplets=None)``: :func:`hierarchical_triplet_loss` on the given
    or mined triplets (default: all valid ones), with margins from the tree of the last :meth:`update_tree`.

    Call :meth:`update_tree` with the whole training set's embeddings before training and then every epoch, as
    the paper does (it uses the tree's levels for sampling too: see ``HierarchicalClassBatchSampler``). The tree
    is not part of the state dict: rebuild it after loading. ``distance`` must be a distance, not a similarity.
    """

    def __init__(
        self,
        beta: float = 0.1,
        distance: Optional[BaseDistance] = None,
        miner: Optional[BaseTripletMiner] = None,
        num_levels: int = 16,
        reduction: Reduction = "mean",
    ) -> None:
        check_finite_number(beta, "beta")
        super().__init__(margin=beta, distance=distance, miner=miner, reduction=reduction)
        check_tree_distance(self.distance)
        check_num_levels(num_levels)
        self.num_levels = num_levels
        self.tree: Optional[ClassTree] = None
        self.spreads: Optional[torch.Tensor] = None

    @property
    def beta(self) -> float:
        return self.margin

    def sums_from_counts(self) -> bool:
        """Never: the margins come from the tree, one per class pair, and may be below the miner's margin."""
        return False

    @torch.no_grad()
    def update_tree(self, embeddings: torch.Tensor, labels: torch.Tensor) -> ClassTree:
        """Rebuild the class tree and the mean intra-class distances from a data set's embeddings (N, D)."""
        self.tree, self.spreads = ClassTree.from_embeddings(embeddings, labels, self.num_levels, self.distance)
        return self.tree

    def compute_loss(
        self, embeddings: torch.Tensor, labels: torch.Tensor, triplets: Optional[TripletIndices] = None
    ) -> torch.Tensor:
        if self.tree is None:
            raise RuntimeError("HierarchicalTripletLoss has no class tree yet: call update_tree(embeddings, labels)")
        if triplets is None:
            triplets = self.miner(embeddings, labels)
        # Margins of the batch's classes only: O(k²) for k classes in the batch, whatever the data set's C.
        classes, local_labels = torch.unique(labels, return_inverse=True)
        margins = class_tree_margins(self.tree, self.spreads, classes.to(self.tree.classes.device))
        # in the dtype of the distances (float32 for 16-bit embeddings): rounded to 16 bits they would shift the hinge
        margins = margins.to(embeddings.device, computing_dtype(embeddings.dtype))
        return hierarchical_triplet_loss(embeddings, local_labels, triplets, margins, self.beta, self.distance)
