"""Metric-learning losses on embeddings (N, D) with labels (N,), and the pixel-level IS-Triplet loss on (B, D, H, W)
embedding maps: each a pure function and an ``nn.Module``; the modules are registered in ``metric.registry.LOSSES``."""
from metric.losses.base_loss import BaseMetricLoss
from metric.losses.triplet_margin_loss import TripletMarginLoss, triplet_margin_loss
from metric.losses.zero_mean_regularizer import ZeroMeanRegularizer, zero_mean_regularizer
from metric.losses.triplet_upper_bound import (TripletUpperBoundLoss, aligned_centroids, fixed_centroids,
                                               triplet_upper_bound_loss)
from metric.losses.soft_triple_loss import SoftTripleLoss, soft_triple_loss
from metric.losses.global_loss import GlobalLoss, global_loss
from metric.losses.is_triplet_loss import ISTripletLoss, is_triplet_loss
from metric.losses.representative_proximity_loss import RepresentativeProximityLoss, representative_proximity_loss
from metric.losses.hierarchical_triplet_loss import HierarchicalTripletLoss, hierarchical_triplet_loss

__all__ = [
    "BaseMetricLoss", "GlobalLoss", "HierarchicalTripletLoss", "ISTripletLoss", "RepresentativeProximityLoss",
    "SoftTripleLoss", "TripletMarginLoss", "TripletUpperBoundLoss", "ZeroMeanRegularizer", "aligned_centroids",
    "fixed_centroids", "global_loss", "hierarchical_triplet_loss", "is_triplet_loss", "representative_proximity_loss",
    "soft_triple_loss", "triplet_margin_loss", "triplet_upper_bound_loss", "zero_mean_regularizer",
]
