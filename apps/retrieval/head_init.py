"""Starting the embedding head from the backbone's own geometry: the identity, or the principal axes of its features.

A random linear head maps the backbone's features to a random 128-d projection, which loses much of what the
pretrained features know before training starts. The identity (embedding size = feature size) starts exactly at
the frozen features: the head then trains as a residual ``x + W x`` with W = 0 at the start, so training (with
early stopping on validation) refines the frozen geometry and the first checkpoints are as good as the frozen
features. Starting from the top principal axes keeps most of their variance in fewer dimensions.

``class_whiten`` (supervised, learned on the training classes): whiten the within-class scatter, shrunk towards a
multiple of the identity, ``W = (Σ_w + λ·tr(Σ_w)/F·I)^(-1/2)``, so directions along which images of one class
vary (pose, background, light) are damped and the rest are kept — "learned whitening" (Radenović et al. 2018,
from matching pairs) with the classes as the matches. It transfers to unseen classes: what varies within a class
varies within the new classes too."""
from __future__ import annotations

import math
from typing import Optional

import torch

from apps.retrieval.features import Labels, label_tensor
from apps.retrieval.model import RetrievalModel
from metric._checks import check_finite, check_shape
from metric.index_means import index_means

HEAD_INITS = ("identity", "pca", "pca_whiten", "class_whiten", "random")
# Shrinkage λ of class_whiten (in units of the mean within-class variance): chosen by class-disjoint
# cross-validation inside Flowers-17's training classes (λ = 5 to 10 best, 1 and 50 worse).
DEFAULT_SHRINKAGE = 10.0
# Whitening divides by sqrt(eigenvalue); axes with less variance than this share of the largest are treated as
# having that much, so near-empty axes are not blown up into noise.
WHITEN_FLOOR = 1e-3


def check_head_init(how: str, feature_dim: int, embedding_dim: int) -> None:
    """Refuse a head start that cannot be made for these sizes (before features are computed for it): ``identity``
    needs embedding_dim = feature_dim, the principal-axes starts embedding_dim ≤ feature_dim."""
    if how not in HEAD_INITS:
        raise ValueError(f"unknown head_init '{how}'; valid: {', '.join(HEAD_INITS)}")
    if how == "identity" and embedding_dim != feature_dim:
        raise ValueError(f"head_init identity needs embedding_dim = the backbone's feature size ({feature_dim}), got "
                         f"{embedding_dim}; set embedding_dim 0 (= that size)")
    if how not in ("identity", "random") and embedding_dim > feature_dim:
        raise ValueError(f"head_init '{how}' needs embedding_dim ({embedding_dim}) <= the backbone's feature size "
                         f"({feature_dim}); use head_init random")


@torch.no_grad()
def init_head(model: RetrievalModel, features: torch.Tensor, how: str = "pca", labels: Optional[Labels] = None,
              shrinkage: float = DEFAULT_SHRINKAGE) -> None:
    """Set ``model``'s linear head from ``features`` (M, feature_dim). ``identity``: weight I, bias 0 (embeddings =
    the L2-normalised features; needs embedding_dim = feature_dim). ``pca``, ``pca_whiten``, ``class_whiten``: the
    weight and bias of :func:`head_weights`. ``random`` keeps the head as it is."""
    check_head_init(how, model.feature_dim, model.embedding_dim)
    if how == "random":
        return
    if how == "identity":
        model.embedding.weight.copy_(torch.eye(model.feature_dim))
        model.embedding.bias.zero_()
        return
    check_shape(features, ["M", str(model.feature_dim)], "features")
    weight, bias = head_weights(features, model.embedding_dim, how, labels, shrinkage)
    model.embedding.weight.copy_(weight.to(model.embedding.weight))
    model.embedding.bias.copy_(bias.to(model.embedding.bias))


def head_weights(features: torch.Tensor, embedding_dim: int, how: str, labels: Optional[Labels] = None,
                 shrinkage: float = DEFAULT_SHRINKAGE) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (embedding_dim, F) and bias (embedding_dim,), float64, of a head that projects ``features`` (M, F),
    centred, on their top ``embedding_dim`` principal axes (``pca``), each divided by its standard deviation
    (``pca_whiten``); or (``class_whiten``) whitens them by their within-class scatter (classes: ``labels`` (M,))
    with ``shrinkage`` λ (see the module docstring) and projects them on the top ``embedding_dim`` principal axes
    of the whitened features (all of them: a rotation, which leaves distances as they are). Rows are scaled to a
    mean norm of 1. Needs M ≥ 2 and 1 ≤ embedding_dim ≤ F (else ``ValueError``).

    With fewer images than axes (or features confined to fewer dimensions), ``pca_whiten``'s axes beyond the ones
    the features span, whose variance was not seen, are divided by the standard deviation of the weakest axis they
    span: whitening them as empty would give them the largest weight of all."""
    if how not in ("pca", "pca_whiten", "class_whiten"):
        raise ValueError(f"head_weights makes the pca, pca_whiten and class_whiten heads, not '{how}'")
    sizes = check_shape(features, ["M", "F"], "features")
    if sizes["M"] < 2:
        raise ValueError(f"head_init {how} needs the features of >= 2 images (their mean and principal axes), got "
                         f"{sizes['M']}")
    if not 1 <= embedding_dim <= sizes["F"]:
        raise ValueError(f"head_init {how} needs embedding_dim in [1, {sizes['F']}] (the features' size), got "
                         f"{embedding_dim}")
    check_finite(features, "features")
    d = embedding_dim
    x = features.double()
    mean = x.mean(0)
    centred = x - mean
    whitening = None
    if how == "class_whiten":
        whitening = within_class_whitening(x, _checked_labels(labels, x.shape[0]), shrinkage)
        centred = centred @ whitening.T
    covariance = centred.T @ centred / max(1, x.shape[0] - 1)
    values, vectors = torch.linalg.eigh(covariance)  # ascending
    values, axes = values.flip(0)[:d], vectors.flip(1)[:, :d].T  # (d,), (d, F)
    if whitening is not None:
        axes = axes @ whitening
    if how == "pca_whiten":
        # relative to the spectrum, so that features of any scale are whitened alike; tiny: features all equal
        variances = values.clamp(min=max(WHITEN_FLOOR * float(values[0]), torch.finfo(values.dtype).tiny))
        spanned = spanned_axes(values, max(x.shape))
        if 0 < spanned < d:
            variances[spanned:] = variances[spanned - 1]
        axes = axes / variances.sqrt().unsqueeze(1)
    axes = axes / axes.norm(dim=1).mean()
    return axes, -(axes @ mean)


def spanned_axes(values: torch.Tensor, size: int) -> int:
    """How many of the covariance eigenvalues ``values`` (descending) belong to axes the data spans: the others are
    rounding noise, at most ``size`` (the larger side of the data matrix) machine epsilons of the largest — the
    relative tolerance of numpy's ``matrix_rank``."""
    return int((values > size * torch.finfo(values.dtype).eps * values[0]).sum())


def _checked_labels(labels: Optional[Labels], rows: int) -> torch.Tensor:
    if labels is None:
        raise ValueError("head_init class_whiten needs the class labels of the features")
    labels = label_tensor(labels, rows)
    if labels.unique().numel() < 2 or labels.unique().numel() == rows:
        raise ValueError(f"head_init class_whiten needs >= 2 classes with >= 2 images in some class; got "
                         f"{labels.unique().numel()} classes over {rows} features")
    return labels


def within_class_whitening(features: torch.Tensor, labels: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """(F, F) symmetric ``(Σ_w + shrinkage·tr(Σ_w)/F·I)^(-1/2)`` of ``features`` (M, F) with classes ``labels``
    (M,): Σ_w is the pooled within-class covariance (deviations from each class's mean, divided by M − classes).
    In the dtype of ``features``."""
    if not 0 < shrinkage < math.inf:
        raise ValueError(f"shrinkage must be > 0 and finite (the within-class scatter of a few classes is "
                         f"singular), got {shrinkage}")
    classes, index = labels.unique(return_inverse=True)
    deviations = features - index_means(features, index, len(classes))[index]
    scatter = deviations.T @ deviations / max(1, features.shape[0] - len(classes))
    dim = scatter.shape[0]
    floor = max(shrinkage * float(scatter.trace()) / dim, torch.finfo(scatter.dtype).tiny)
    values, vectors = torch.linalg.eigh(scatter + floor * torch.eye(dim, dtype=scatter.dtype, device=scatter.device))
    return (vectors * values.clamp(min=floor).rsqrt()) @ vectors.T
