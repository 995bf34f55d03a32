"""Starting the embedding head from the backbone's own geometry: the identity, or the principal axes of its features.

A random linear head maps the backbone's features to a random 128-d projection, which loses much of what the
pretrained features know before training starts. The identity (embedding size = feature size) starts exactly at
the frozen features: the head then trains as a residual ``x + W x`` with W = 0 at the start, so training (with
early stopping on validation) refines the frozen geometry and the first checkpoints are as good as the frozen
features. Starting from the top principal axes keeps most of their variance in fewer dimensions."""
from __future__ import annotations

import torch

from apps.retrieval.model import RetrievalModel
from metric._checks import check_finite, check_shape

HEAD_INITS = ("identity", "pca", "pca_whiten", "random")
# Whitening divides by sqrt(eigenvalue); axes with less variance than this share of the largest are treated as
# having that much, so near-empty axes are not blown up into noise.
WHITEN_FLOOR = 1e-3


@torch.no_grad()
def init_head(model: RetrievalModel, features: torch.Tensor, how: str = "pca") -> None:
    """Set ``model``'s linear head from ``features`` (M, feature_dim). ``identity``: weight I, bias 0 (embeddings =
    the L2-normalised features; needs embedding_dim = feature_dim). ``pca``: rows are the top ``embedding_dim``
    principal axes (divided by their standard deviations for ``pca_whiten``) and the bias centres the features,
    so the head projects the centred features onto them; rows are scaled to a mean norm of 1 (needs embedding_dim
    ≤ feature_dim). ``random`` keeps the head as it is."""
    if how not in HEAD_INITS:
        raise ValueError(f"unknown head_init '{how}'; valid: {', '.join(HEAD_INITS)}")
    if how == "random":
        return
    if how == "identity":
        if model.embedding_dim != model.feature_dim:
            raise ValueError(f"head_init identity needs embedding_dim = the backbone's feature size "
                             f"({model.feature_dim}), got {model.embedding_dim}; set embedding_dim 0 (= that size)")
        model.embedding.weight.copy_(torch.eye(model.feature_dim))
        model.embedding.bias.zero_()
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
