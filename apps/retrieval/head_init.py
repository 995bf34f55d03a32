"""Starting the embedding head from the principal axes of the backbone's features.

A random linear head maps the backbone's features to a random 128-d projection, which loses much of what the
pretrained features know before training starts. Starting from the top principal axes keeps most of their
variance, so training refines the frozen features' geometry instead of rebuilding it."""
from __future__ import annotations

import torch

from apps.retrieval.model import RetrievalModel
from metric._checks import check_finite, check_shape

HEAD_INITS = ("pca", "pca_whiten", "random")
# Whitening divides by sqrt(eigenvalue); axes with less variance than this share of the largest are treated as
# having that much, so near-empty axes are not blown up into noise.
WHITEN_FLOOR = 1e-3


@torch.no_grad()
def init_head(model: RetrievalModel, features: torch.Tensor, how: str = "pca") -> None:
    """Set ``model``'s linear head from ``features`` (M, feature_dim): rows are the top ``embedding_dim``
    principal axes (divided by their standard deviations for ``pca_whiten``) and the bias centres the features,
    so the head projects the centred features onto them; rows are scaled to a mean norm of 1. ``random`` keeps
    the head as it is. Needs embedding_dim ≤ feature_dim."""
    if how not in HEAD_INITS:
        raise ValueError(f"unknown head_init '{how}'; valid: {', '.join(HEAD_INITS)}")
    if how == "random":
        return
    check_shape(features, ["M", str(model.feature_dim)], "features")
    check_finite(features, "features")
    d = model.embedding_dim
    if d > model.feature_dim:
        raise ValueError(f"head_init '{how}' needs embedding_dim ({d}) <= the backbone's feature size "
                         f"({model.feature_dim}); use head_init random")
    x = features.double()
    mean = x.mean(0)
    centred = x - mean
    covariance = centred.T @ centred / max(1, x.shape[0] - 1)
    values, vectors = torch.linalg.eigh(covariance)  # ascending
    values, axes = values.flip(0)[:d], vectors.flip(1)[:, :d].T  # (d,), (d, F)
    if how == "pca_whiten":
        axes = axes / values.clamp(min=max(WHITEN_FLOOR * float(values[0]), 1e-12)).sqrt().unsqueeze(1)
    axes = axes / axes.norm(dim=1).mean()
    model.embedding.weight.copy_(axes.to(model.embedding.weight))
    model.embedding.bias.copy_((-(axes @ mean)).to(model.embedding.bias))
