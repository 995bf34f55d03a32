"""Retrieval embedding model: timm backbone → global pooling → linear embedding → L2 normalisation, built from
names, saved as safetensors with its constructor config."""
from __future__ import annotations

import os
from typing import Any, Iterator, Optional, Sequence, Union

import timm
import torch
import torch.nn.functional as F
from torch import nn

from apps.retrieval.pooling import POOLINGS
from coseg.config import check_normalization
from coseg.engine.config import ConfigError
from coseg.models.checkpoint import (BOOLEAN, NAME, Field, check_config, integer, load_model_file, numbers,
                                     write_checkpoint)
from coseg.models.pretrained import (IMAGENET_WEIGHT_SOURCES, TIMM_PREFIX, downloading_weights, has_offline_imagenet,
                                     input_normalization, load_timm_weights)
from metric._checks import check_shape, is_integer, outside_unit_range, whole_number

PathLike = Union[str, os.PathLike]
DEFAULT_BACKBONE = "tf_efficientnet_lite0"
MODEL_KIND = "retrieval"  # recorded in model files (a co-segmentation model's loader names it)
_STAGE = integer(0)
RANGE_SLACK = 1e-3  # how far images may stray outside [0, 1]: resampling them can overshoot by rounding

# The fields of a RetrievalModel's saved config (:func:`create_retrieval_model`'s arguments but ``weights``), as
# :meth:`RetrievalModel.save` writes them (sizes and stage indices resolved): what each must hold.
RETRIEVAL_FIELDS: dict[str, Field] = {
    "backbone": NAME, "pooling": NAME, "embedding_dim": integer(1), "freeze_bn": BOOLEAN,
    "mean": numbers(3), "std": numbers(3, positive=True),
    "pool_stages": Field("a list of integers >= 0", lambda v: isinstance(v, list) and all(map(_STAGE.accepts, v))),
    "flip_average": BOOLEAN,
}


def _check_range(images: torch.Tensor) -> None:
    outside = outside_unit_range(images, RANGE_SLACK)
    if outside is None:
        return
    low, high, nan = outside
    if nan:
        raise ValueError("images hold NaN values")
    raise ValueError(f"images must be in [0, 1] (the model normalises them by its mean/std itself), got values from "
                     f"{low:g} to {high:g}; divide 0-255 images by 255")


def _batch_norms(module: nn.Module) -> Iterator[nn.modules.batchnorm._BatchNorm]:
    return (m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


class RetrievalModel(nn.Module):
    """Images (B, 3, H, W), float in [0, 1] → unit-length embeddings (B, embedding_dim).

    ``forward(x) == embed_features(features(x))``, or with ``flip_average`` in eval mode ``embed_features((features(x) +
    features(mirrored x)) / 2)`` (test-time augmentation; training steps embed the one view they are given, which the
    training augmentation mirrors at random): :meth:`features` runs the backbone and the pooling (normalising the images
    inside with ``mean``/``std``), :meth:`embed_features` the linear head alone, so pooled features can be cached and
    the head trained on them. With ``pool_stages`` the features are the L2-normalised pooled final feature map followed
    by the L2-normalised pooled maps of those stages (indices of the backbone's ``feature_info``, as timm's
    ``forward_intermediates`` takes them), concatenated. With ``freeze_bn`` the backbone's BatchNorm layers stay in eval
    mode (running statistics fixed) and their affine parameters do not train. ``config`` holds the
    :func:`create_retrieval_model` arguments that rebuild this model; build it with that function."""

    def __init__(self, backbone: nn.Module, pooling: nn.Module, feature_dim: int, *, embedding_dim: int,
                 freeze_bn: bool, mean: Sequence[float], std: Sequence[float], config: dict[str, Any],
                 pool_stages: Sequence[int] = (), flip_average: bool = False) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        check_normalization(mean, std)
        self.backbone = backbone
        self.pooling = pooling
        self.embedding = nn.Linear(feature_dim, embedding_dim)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.feature_dim = feature_dim
        self.embedding_dim = embedding_dim
        self.pool_stages = list(pool_stages)
        self.flip_average = flip_average
        self.freeze_bn = freeze_bn
        self.frozen_norms: list[nn.Module] = []  # the BatchNorm layers of the stages :meth:`freeze_stages` fixed
        self.config = dict(config)
        if freeze_bn:
            for bn in _batch_norms(self.backbone):
                bn.requires_grad_(False)
            self.train(self.training)

    def train(self, mode: bool = True) -> "RetrievalModel":
        """Like ``nn.Module.train``, but frozen BatchNorm layers (``freeze_bn``, or in frozen stages) stay in eval
        mode: their running statistics do not change."""
        super().train(mode)
        for bn in _batch_norms(self.backbone) if self.freeze_bn else self.frozen_norms:
            bn.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B, feature_dim) of images (B, 3, H, W), float in [0, 1] (any float dtype: run
        in the model's). Raises ``ValueError`` for values outside [0, 1] or NaN (e.g. 0-255 images)."""
        check_shape(images, ["B", "3", "H", "W"], "images")
        if not images.is_floating_point():
            raise TypeError(f"images must be float in [0, 1], got dtype {images.dtype}; convert 0-255 images with "
                            ".float() / 255")
        _check_range(images)
        x = (images.to(self.mean.dtype) - self.mean) / self.std
        if not self.pool_stages:
            return self.pooling(self._checked_map(self.backbone.forward_features(x)))
        final, stages = self.backbone.forward_intermediates(x, indices=self.pool_stages)
        return torch.cat([F.normalize(self.pooling(self._checked_map(m)), dim=1) for m in (final, *stages)], dim=1)

    def _checked_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        if feature_map.dim() != 4:
            raise ValueError(f"backbone '{self.config['backbone']}' gives features of shape "
                             f"{tuple(feature_map.shape)}, not a (B, C, h, w) map: only convolutional backbones "
                             f"are supported")
        return feature_map

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings (B, embedding_dim) of pooled features (B, feature_dim), any float dtype (run in the
        model's): the head alone."""
        check_shape(features, ["B", str(self.feature_dim)], "features")
        return F.normalize(self.embedding(features.to(self.embedding.weight.dtype)), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.features(images)
        if self.flip_average and not self.training:
            features = (features + self.features(images.flip(-1))) / 2
        return self.embed_features(features)

    def freeze_stages(self, count: int) -> None:
        """Fix the backbone's parameters from the input up to and including its first ``count`` stages (entries of
        its ``feature_info``): they no longer train, their BatchNorm statistics stay as they are, and no backward
        pass runs through them."""
        if count == 0:
            return
        info = getattr(self.backbone, "feature_info", None)
        if not isinstance(info, list) or not info:
            raise ValueError(f"backbone '{self.config['backbone']}' does not list its stages (timm's feature_info): "
                             f"set frozen_stages to 0")
        if not 0 <= count <= len(info):
            raise ValueError(f"frozen_stages must be in 0..{len(info)} (backbone '{self.config['backbone']}' has "
                             f"{len(info)} stages), got {count}")
        last, reached = info[count - 1]["module"], False
        for name, module in self.backbone.named_modules():
            inside = name == last or name.startswith(last + ".")
            if reached and not inside:
                break
            reached = reached or inside
            for p in module.parameters(recurse=False):
                p.requires_grad_(False)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                self.frozen_norms.append(module)
        self.train(self.training)

    def feature_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of :meth:`features` (backbone and pooling), e.g. for their own learning rate."""
        return [p for p in [*self.backbone.parameters(), *self.pooling.parameters()] if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of :meth:`embed_features` (the linear embedding)."""
        return list(self.embedding.parameters())

    def save(self, path: PathLike, metadata: Optional[dict[str, str]] = None) -> None:
        """Write the weights and :attr:`config` to the safetensors file ``path`` (atomically), with optional extra
        string ``metadata``. :func:`load_retrieval_model` rebuilds the model from it."""
        write_checkpoint(path, self.state_dict(), self.config, metadata, kind=MODEL_KIND)


@torch.no_grad()
def check_image_size(model: RetrievalModel, size: int) -> None:
    """Raise ``ValueError`` when ``model`` cannot embed ``size``×``size`` images — a backbone built for one input
    size (vision transformers), one whose windows do not divide the map, or one giving channels-last maps, which
    would be pooled over the wrong axes — found by passing one blank image through :meth:`RetrievalModel.features`
    in eval mode (no state changes)."""
    was_training = model.training
    try:
        features = model.eval().features(torch.zeros(1, 3, size, size, device=model.mean.device))
    except (AssertionError, RuntimeError) as e:
        raise ValueError(f"backbone '{model.config['backbone']}' cannot embed {size}×{size}-pixel images (choose "
                         f"another image size or a convolutional backbone): {e}") from None
    finally:
        model.train(was_training)
    if tuple(features.shape) != (1, model.feature_dim):
        raise ValueError(f"backbone '{model.config['backbone']}' gives pooled features of shape "
                         f"{tuple(features.shape)} for one image, not (1, {model.feature_dim}): its feature map is not "
                         "(B, C, h, w) (channels-last backbones are not supported)")


def _backbone(name: str, weights: Optional[PathLike]) -> nn.Module:
    """Headless, unpooled timm model ``name`` with ``weights`` (see :func:`create_retrieval_model`)."""
    if not timm.is_model(name):
        raise KeyError(f"unknown timm backbone '{name}'; backbones with offline ImageNet weights: "
                       f"{', '.join(IMAGENET_WEIGHT_SOURCES.names())}")
    if weights == "imagenet" and not has_offline_imagenet(TIMM_PREFIX + name):
        with downloading_weights(name, offline=IMAGENET_WEIGHT_SOURCES.names()):
            return timm.create_model(name, pretrained=True, num_classes=0, global_pool="")
    backbone = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    if weights is not None:
        load_timm_weights(backbone, name, weights)
    return backbone


def create_retrieval_model(backbone: str = DEFAULT_BACKBONE, weights: Optional[PathLike] = "imagenet",
                           pooling: str = "avg", embedding_dim: int = 128, freeze_bn: bool = False,
                           mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                           pool_stages: Sequence[int] = (), flip_average: bool = False) -> RetrievalModel:
    """Build a :class:`RetrievalModel` from names, in train mode (as any new ``nn.Module``), to train: call ``.eval()``
    before embedding images with it (train mode takes BatchNorm statistics from the batch and updates them, and skips
    ``flip_average``); :func:`load_retrieval_model` returns a saved model in eval mode.

    backbone: a timm model name. weights: ``"imagenet"`` (offline for ``tf_efficientnet_lite0/1/2``, downloaded by
    timm for other backbones), None (random), or a local ``.safetensors``/``.pth`` file in timm key names.
    pooling: a name in ``POOLINGS`` (``avg``, ``gem``). embedding_dim: 0 = the backbone's feature size (e.g. for an
    identity head start). mean/std: input normalisation per RGB channel of images in [0, 1], 3 finite numbers each,
    std > 0 (default: the backbone's pretrained config).
    pool_stages: stages of the backbone (indices into its ``feature_info``, negative from the end) whose pooled maps
    are concatenated to the final one (see :class:`RetrievalModel`). flip_average: embed images as the mean of their
    features and their mirror's (test-time augmentation, twice the backbone's cost)."""
    embedding_dim = whole_number("embedding_dim", embedding_dim)
    if embedding_dim < 0:
        raise ValueError(f"embedding_dim must be >= 0 (0 = the backbone's feature size), got {embedding_dim}")
    pool = POOLINGS.get(pooling)()
    net = _backbone(backbone, weights)
    stages = _stage_indices(net, backbone, pool_stages)
    feature_dim = int(net.num_features) + sum(int(net.feature_info[i]["num_chs"]) for i in stages)
    embedding_dim = embedding_dim or feature_dim
    mean, std = input_normalization(TIMM_PREFIX + backbone, mean, std)
    config = {
        "backbone": backbone,
        "pooling": pooling,
        "embedding_dim": embedding_dim,
        "freeze_bn": freeze_bn,
        "mean": mean,
        "std": std,
        "pool_stages": stages,
        "flip_average": flip_average,
    }
    return RetrievalModel(net, pool, feature_dim, embedding_dim=embedding_dim, freeze_bn=freeze_bn,
                          mean=config["mean"], std=config["std"], config=config, pool_stages=stages,
                          flip_average=flip_average)


def _stage_indices(net: nn.Module, name: str, pool_stages: Sequence[int]) -> list[int]:
    """``pool_stages`` (a list or tuple of ints) as non-negative indices into ``net``'s ``feature_info`` (ascending,
    distinct). Stages the backbone does not have raise ``ConfigError`` (a ``ValueError``; a usage error naming
    ``pool_stages``)."""
    if not isinstance(pool_stages, (list, tuple)) or not all(is_integer(i) for i in pool_stages):
        raise TypeError(f"pool_stages must be a list of stage indices (ints), got {pool_stages!r}")  # "12": [1, 2]
    if not pool_stages:
        return []
    info = getattr(net, "feature_info", None)
    if not hasattr(net, "forward_intermediates") or not isinstance(info, list) or not info:
        raise ConfigError(f"backbone '{name}' does not expose intermediate stages (timm's forward_intermediates): "
                         f"leave pool_stages empty")
    bad = [i for i in pool_stages if not -len(info) <= int(i) < len(info)]
    if bad:
        raise ConfigError(f"pool_stages {bad} out of range: backbone '{name}' has {len(info)} stages (0 to "
                         f"{len(info) - 1}, or -{len(info)} to -1 from the end)")
    return sorted({int(i) % len(info) for i in pool_stages})


def load_retrieval_model(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> RetrievalModel:
    """Rebuild the model saved by :meth:`RetrievalModel.save` in ``path`` (no download: weights=None, then its
    state dict), on ``map_location``, in eval mode, ready to embed images (``.train()`` to train it on). Raises
    ``ValueError`` naming the file if it is not such a model file; a pickled file is refused without being unpickled,
    and so is a config field that is unknown or of the wrong type or range (:data:`RETRIEVAL_FIELDS`)."""
    return load_model_file(path, _build_from_file, MODEL_KIND, map_location).eval()


def _build_from_file(weights: Optional[PathLike] = None, **config: Any) -> RetrievalModel:
    """:func:`create_retrieval_model` of a model file's config, each field checked first (``ValueError`` names the
    first that is wrong)."""
    check_config(config, RETRIEVAL_FIELDS)
    return create_retrieval_model(**config, weights=weights)
