"""Semantic prior: where the classes a group has in common are, read by the encoder's own ImageNet classifier.

An ImageNet encoder knows about a thousand object classes, far more than a co-segmentation training set shows.
Its classifier head (for EfficientNet: the 1×1 ``conv_head`` + BN, then the linear classifier), kept frozen and
applied per pixel to the encoder's deepest features, gives class-activation maps (CAMs). The group's common
classes are the mean of its images' class probabilities; the CAM of that mixture marks, in every image, what
the group has in common, also for categories the segmentation network never saw in training. The maps are
inputs to the group-consensus fusion, which learns how far to trust them.

The classifier reads either the segmentation encoder's own deepest features (which drift from ImageNet's as the
encoder is fine-tuned: after 30 minutes on iCoseg's train30 the maps of a group of bears light up the rocks of
their enclosure, stone buildings being foreground in train30) or those of a frozen copy of the ImageNet encoder
(``trunk``: the maps stay ImageNet's, for one more encoder pass per image without gradients).
"""
from __future__ import annotations

import os
from typing import Optional, Union

import timm
import torch
import torch.nn.functional as F
from torch import nn

from coseg.models.pretrained import (TIMM_PREFIX, downloading_weights, has_offline_imagenet, load_timm_weights,
                                     offline_timm_name)
from metric.index_means import index_means

PathLike = Union[str, os.PathLike]
PRIOR_CHANNELS = 2


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    """(B, h, w) → each map scaled to [0, 1] (a constant map becomes 0)."""
    flat = maps.flatten(1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    return ((flat - low) / (high - low).clamp(min=1e-6)).view_as(maps)


class SemanticPrior(nn.Module):
    """Frozen classifier head over the encoder's deepest features (B, C, h, w), or over those of its own frozen
    ImageNet encoder ``trunk`` (an smp encoder: normalised images → feature list).

    ``class_features(deepest, normalized)`` → (B, C', h, w) pre-pooling features (of ``trunk(normalized)[-1]``
    when there is a trunk, else of ``deepest``); ``probabilities`` → (B, K) ImageNet class
    probabilities of each image (the classifier on their spatial mean, as the full network computes them);
    ``maps(features, group_probabilities)`` → (B, 2, h, w) in [0, 1]: the CAM of each image's group mixture of
    classes and the CAM of its own classes. Always in eval mode, no trainable parameters."""

    def __init__(self, head: nn.Module, classifier: nn.Linear, trunk: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.classifier = classifier
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "SemanticPrior":
        return super().train(False)  # frozen BatchNorm statistics

    def class_features(self, deepest: torch.Tensor, normalized: torch.Tensor) -> torch.Tensor:
        if self.trunk is None:
            return self.head(deepest.detach())
        with torch.no_grad():
            return self.head(self.trunk(normalized)[-1])

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        pooled = _at_least_float32(features).mean(dim=(2, 3))
        return torch.softmax(self.classifier(pooled.to(self.classifier.weight.dtype)), dim=1).to(pooled.dtype)

    def cam(self, features: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        """(B, C', h, w) features, (B, K) class weights → (B, h, w) CAM of the weighted classes, scaled to [0, 1]."""
        features = _at_least_float32(features)
        directions = class_weights.to(features.dtype) @ self.classifier.weight.to(features.dtype)  # (B, C')
        return _minmax(torch.einsum("bchw,bc->bhw", features, directions))

    def maps(self, features: torch.Tensor, group_probabilities: torch.Tensor) -> torch.Tensor:
        own = self.probabilities(features)
        return torch.stack([self.cam(features, group_probabilities), self.cam(features, own)], dim=1)


def group_mean(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(B, K) per-image values, (B,) group ids → (B, K): each row replaced by the mean over its group (an
    order-invariant function of the group's members)."""
    ids, inverse = torch.unique(groups, return_inverse=True)
    return index_means(values, inverse, len(ids))[inverse]


def _head_of(model: nn.Module, deepest_channels: int, encoder: str) -> tuple[nn.Module, nn.Linear]:
    classifier = model.get_classifier()
    if not isinstance(classifier, nn.Linear):
        raise ValueError(f"semantic prior: encoder '{encoder}' has no linear ImageNet classifier; train without it: "
                         f"--no-semantic-prior (semantic_prior: false)")
    # EfficientNet-style models end their features with conv_head + bn2, applied per pixel before the pooling
    per_pixel = hasattr(model, "conv_head") and hasattr(model, "bn2")
    head: nn.Module = nn.Sequential(model.conv_head, model.bn2) if per_pixel else nn.Identity()
    expected = model.conv_head.in_channels if per_pixel else classifier.in_features
    if expected != deepest_channels:
        raise ValueError(f"semantic prior: the classifier head of '{encoder}' takes {expected} channels but the "
                         f"encoder's deepest features have {deepest_channels}; this encoder is not supported "
                         f"(--no-semantic-prior)")
    if not _pools_then_classifies(model, head, classifier, deepest_channels):
        raise ValueError(f"semantic prior: the classifier head of '{encoder}' does more than average-pool its "
                         f"features and classify them (e.g. a norm after the pooling), so its class maps cannot be "
                         f"read per pixel; this encoder is not supported (--no-semantic-prior)")
    return head, classifier


def _pools_then_classifies(model: nn.Module, head: nn.Module, classifier: nn.Linear, channels: int) -> bool:
    """Whether timm ``model``'s own head, on ``head``'s output for (B, ``channels``, h, w) features, is
    ``classifier`` of their spatial mean (what :class:`SemanticPrior` computes), checked on random features."""
    features = torch.randn(2, channels, 3, 3, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        mapped = head(features)
        return torch.allclose(model.forward_head(mapped), classifier(mapped.mean(dim=(2, 3))), rtol=1e-4, atol=1e-5)


def build_semantic_prior(encoder: str, deepest_channels: int, weights: Union[PathLike, None],
                         trunk: Optional[nn.Module] = None) -> SemanticPrior:
    """The frozen classifier head of timm model ``encoder`` (``tu-<timm name>``) with ``weights``: ``"imagenet"``
    (offline source, else timm's download), a local file in timm key names holding the classifier, or None
    (random: the weights then come from a model file's state dict). ``trunk``: the frozen encoder it reads (None:
    the segmentation encoder's features are passed in)."""
    if not encoder.startswith(TIMM_PREFIX):
        same = offline_timm_name(encoder)
        instead = f"use '{TIMM_PREFIX}{same}' (the same weights) or " if same is not None else ""
        raise ValueError(f"semantic prior needs a timm encoder ('{TIMM_PREFIX}<name>') with an ImageNet classifier, "
                         f"got '{encoder}'; {instead}train without it: --no-semantic-prior (semantic_prior: false)")
    name = encoder[len(TIMM_PREFIX):]
    if weights == "imagenet" and not has_offline_imagenet(encoder):
        with downloading_weights(encoder):
            model = timm.create_model(name, pretrained=True)
    else:
        model = timm.create_model(name, pretrained=False)
        if weights is not None:
            try:
                load_timm_weights(model, name, weights)  # strict: a file without the classifier is refused
            except ValueError as err:
                raise ValueError(f"semantic prior: it reads the encoder's ImageNet classifier from the weights, but "
                                 f"{err}; pass the full timm model's state dict (with its classifier) or train "
                                 f"without it: --no-semantic-prior (semantic_prior: false)") from err
    return SemanticPrior(*_head_of(model, deepest_channels, encoder), trunk=trunk)


def resize_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, P, h, w) prior maps → (B, P, *size), bilinear."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
