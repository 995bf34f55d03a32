"""Co-segmentation network: encoder → decoder → mask head + per-pixel embedding head, built from names."""
from __future__ import annotations

import copy
import os
from contextlib import nullcontext
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence, Union

import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base import SegmentationModel
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from coseg.config import check_normalization
from coseg.models.checkpoint import write_checkpoint
from coseg.models.colour_cut import image_digest, spread
from coseg.models.embedding_head import EmbeddingHead
from coseg.models.group_consensus import GroupConsensus, consensus_maps, group_index, group_prototypes
from coseg.models.edge_filter import EdgeFilter
from coseg.models.group_statistics import GroupStatistics, GroupTooSmall
from coseg.models.modes import in_mode
from coseg.models.refinement import GroupRefinement
from coseg.models.semantic_prior import (PRIOR_CHANNELS, SemanticPrior, build_semantic_prior, group_mean,
                                         resize_maps)
from coseg.models.pretrained import (downloading_weights, input_normalization, has_offline_imagenet,
                                     load_encoder_weights, smp_imagenet_argument)
from metric._checks import check_count, check_shape, outside_unit_range, whole_number
from metric.registry import Registry

PathLike = Union[str, os.PathLike]
DEFAULT_ENCODER = "tu-tf_efficientnet_lite0"
MODEL_KIND = "co-segmentation"  # recorded in model files (a retrieval model's loader names it)

# Architecture name → smp model class; its encoder and decoder are used, its segmentation head is not.
ARCHITECTURES: Registry[SegmentationModel] = Registry("segmentation architecture")
for _name, _smp_class in (("unet", smp.Unet), ("unetplusplus", smp.UnetPlusPlus), ("manet", smp.MAnet),
                          ("linknet", smp.Linknet), ("fpn", smp.FPN), ("deeplabv3plus", smp.DeepLabV3Plus),
                          ("upernet", smp.UPerNet)):
    ARCHITECTURES.register(_name)(_smp_class)

# Architecture name → how many of the encoder's deepest feature maps its decoder reads, where it skips some: a
# group-consensus module on a map the decoder skips would never train (DeepLabV3+ reads the deepest map and the
# 1/4-size one; FPN and UPerNet all but the 1/2-size one). The other architectures read every map.
DECODED_DEEPEST_LEVELS = {"deeplabv3plus": 1, "fpn": 4, "upernet": 4}


class CosegOutput(NamedTuple):
    """What :class:`CosegNet` returns: foreground logits at the input size and unit pixel embeddings."""

    mask_logits: torch.Tensor  # (B, 1, H, W) foreground logits
    embeddings: torch.Tensor  # (B, D, H / s, W / s) with s = embedding_stride, unit L2 norm over D at every pixel


class GroupContext(NamedTuple):
    """What a chunk of a group needs from the whole group of N images: at each consensus level the unit keys
    (R, K, Q) of its R reference images (all N, or a sample of them in a large group) and their prototypes (R, K),
    the references' positions in the group (R,), the semantic prior's class mixture of the whole group (1, C) or
    None, and N."""

    keys: list[torch.Tensor]
    prototypes: list[torch.Tensor]
    positions: torch.Tensor
    probabilities: Optional[torch.Tensor]
    size: int


class StreamedContext(NamedTuple):
    """A group's :class:`GroupContext`, and that of the mirrored group for flip test-time augmentation."""

    plain: GroupContext
    mirrored: Optional[GroupContext]


class ChunkKeys(NamedTuple):
    """One chunk's part of a group's context: its keys and class probabilities, and its mirror image's."""

    plain: tuple[list[torch.Tensor], Optional[torch.Tensor]]
    mirrored: Optional[tuple[list[torch.Tensor], Optional[torch.Tensor]]]


STATISTICS_PIXELS = 128 * 224 * 224  # images × pixels per pass of the group statistics: 128 images at the default size
MAX_REFERENCES = 128


def reference_images(keys: torch.Tensor, limit: int) -> torch.Tensor:
    """Positions (R,), ascending, of the images a group's consensus compares each image with, from their keys
    (N, K, Q): all N when N <= ``limit``, else ``limit`` of them spread over the group ordered by their keys'
    content, so the choice does not depend on the order of the images. The consensus costs N × R comparisons of
    images instead of N × N."""
    n = keys.shape[0]
    if limit < 1:
        raise ValueError(f"max_references must be >= 1, got {limit}")
    if n <= limit:
        return torch.arange(n, device=keys.device)
    order = torch.argsort(keys.double().sum(dim=(1, 2)), stable=True)
    return order[torch.linspace(0, n - 1, limit, device=keys.device).round().long()].sort().values


SAME_KEYS = 1e-5  # keys of one image encoded in batches of other sizes differ by ~1e-6


def self_references(keys: list[torch.Tensor], positions: torch.Tensor, context: GroupContext) -> torch.Tensor:
    """(n, R) True where reference j of ``context`` stands for image i itself, for n images at group ``positions``
    (n,) with unit keys (n, K, Q) at each consensus level: the reference at its own position, or, for an image that
    is not a reference, the first reference with the same keys (within ``SAME_KEYS``) at every level, a copy of it.
    So the copies of an image get the same output whichever of them :func:`reference_images` took."""
    mask = positions[:, None] == context.positions.to(positions.device)[None, :]
    for i in torch.nonzero(~mask.any(dim=1)).flatten().tolist():
        same = torch.stack([(k[i] - r).abs().flatten(1).amax(dim=1) <= SAME_KEYS
                            for k, r in zip(keys, context.keys)]).all(dim=0)
        if same.any():
            mask[i, int(torch.nonzero(same)[0])] = True
    return mask


def pools_before_batchnorm(decoder: nn.Module) -> bool:
    """Whether ``decoder`` pools each image's features to 1×1 and then normalises them by BatchNorm (DeepLabV3+'s
    ASPP image pooling, UPerNet's pyramid pooling): in training mode such a layer has one value per channel and
    image, so it needs two images whatever their size."""
    return any(isinstance(block, nn.Sequential) and len(block) > 0 and isinstance(block[0], nn.AdaptiveAvgPool2d)
               and block[0].output_size in (1, (1, 1)) and any(isinstance(m, _BatchNorm) for m in block.modules())
               for block in decoder.modules())


def statistics_images(images: torch.Tensor, limit: int) -> torch.Tensor:
    """Positions (R,) of the images (N, 3, H, W) of a group that :class:`GroupStatistics` measures it on: all N
    when N <= ``limit``, else ``limit`` of them chosen by content (:func:`~coseg.models.colour_cut.spread` of their
    digests), so the choice does not depend on the order of the images. The pass costs the memory of R images."""
    n = images.shape[0]
    if n <= limit:
        return torch.arange(n, device=images.device)
    chosen = spread([image_digest(image.cpu().numpy()) for image in images], limit)
    return torch.tensor(sorted(chosen), dtype=torch.long, device=images.device)


class CosegNet(nn.Module):
    """Images (B, 3, H, W), float in [0, 1], and optional group ids (B,) → :class:`CosegOutput` at the input size.

    With ``group_levels`` > 0, a :class:`GroupConsensus` module on each of the encoder's deepest ``group_levels``
    feature maps lets the images of a group inform each other before decoding (images without a group id are
    each a group of one). With a ``semantic_prior`` (:class:`SemanticPrior`, the encoder's frozen ImageNet
    classifier), those modules also fuse the class-activation maps of the classes the group has in common.
    :meth:`predict_group` and :meth:`group_context` compare each image with at most ``max_references`` images of
    its group (:func:`reference_images`; 128 by default, an inference setting not saved with the model), so the
    consensus of a large group costs time linear in its size.

    Normalises inside with the ``mean``/``std`` the encoder's weights expect. ``config`` holds the
    :func:`create_model` arguments that rebuild this model (saved by :meth:`save`); build it with
    :func:`create_model` rather than directly."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, decoder_channels: int, *, embedding_dim: int,
                 embedding_hidden_channels: int, embedding_stride: int, mean: Sequence[float], std: Sequence[float],
                 group_levels: int = 0, semantic_prior: Optional[SemanticPrior] = None,
                 config: dict[str, Any]) -> None:
        super().__init__()
        check_normalization(mean, std)
        self.encoder = encoder
        self.decoder = decoder
        self.mask_head = nn.Conv2d(decoder_channels, 1, kernel_size=3, padding=1)
        self.embedding_head = EmbeddingHead(decoder_channels, embedding_dim, embedding_hidden_channels)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.output_stride = int(encoder.output_stride)
        if embedding_stride < 1 or self.output_stride % embedding_stride:
            raise ValueError(f"embedding_stride must divide the encoder's output stride {self.output_stride}, "
                             f"got {embedding_stride}")
        self.embedding_stride = embedding_stride
        channels = list(encoder.out_channels)
        if not 0 <= group_levels < len(channels):
            raise ValueError(f"group_levels must be in [0, {len(channels) - 1}], got {group_levels}")
        if 0 in channels[len(channels) - group_levels:]:
            usable = channels[::-1].index(0)
            raise ValueError(f"group_levels must be in [0, {usable}] for encoder '{config.get('encoder')}', got "
                             f"{group_levels}: its feature map {usable + 1} levels from the deepest is empty (0 "
                             f"channels), so there is nothing to compare (--group-levels)")
        self.group_levels = group_levels
        self.pools_before_batchnorm = pools_before_batchnorm(decoder)
        if semantic_prior is not None and not group_levels:
            raise ValueError("a semantic prior is fused by the group-consensus modules: it needs group_levels >= 1")
        extra = PRIOR_CHANNELS if semantic_prior is not None else 0
        self.group_consensus = nn.ModuleList(GroupConsensus(c, extra_channels=extra)
                                             for c in channels[len(channels) - group_levels:])
        self.semantic_prior = semantic_prior
        self.config = dict(config)
        self.max_references = MAX_REFERENCES
        self._encoder_frozen = False
        self._encoder_statistics_frozen = False

    @property
    def max_references(self) -> int:
        """How many images of its group each image is compared with at most (:func:`reference_images`), and how many
        group statistics are measured on (:func:`statistics_images`)."""
        return self._max_references

    @max_references.setter
    def max_references(self, limit: int) -> None:
        check_count(limit, 1, "max_references")
        self._max_references = int(limit)

    def check_images(self, images: torch.Tensor) -> tuple[int, int]:
        """Raise a clear error unless ``images`` is float (B, 3, H, W) in [0, 1] with H, W multiples of the output
        stride; return (H, W). A NaN image would make every image of its group NaN (the consensus compares them)."""
        sizes = check_shape(images, ["B", "3", "H", "W"], "images")
        if not images.is_floating_point():
            raise TypeError(f"images must be float in [0, 1], got dtype {images.dtype}")
        outside = outside_unit_range(images)
        if outside is not None:
            low, high, nan = outside
            found = f"{nan} NaN value(s)" if nan else f"values from {low:g} to {high:g}"
            raise ValueError(f"images must be in [0, 1] (the model normalises them by its mean/std itself), got "
                             f"{found}; divide 0-255 images by 255, clamp resampled ones to [0, 1]")
        h, w, s = sizes["H"], sizes["W"], self.output_stride
        if h % s or w % s:
            raise ValueError(f"images height and width must be multiples of {s} (the encoder's output stride), "
                             f"got {h}×{w}; resize or pad to {-(-h // s) * s}×{-(-w // s) * s}")
        return h, w

    def _too_few_values(self, count: int, h: int, w: int, deepest: bool = True) -> Optional[tuple[str, str]]:
        """Why ``count`` images of h×w give a BatchNorm layer one value per channel, fewer than the two it needs in
        training mode, and whether a larger image size helps (" or at a larger image size", else ""); None if they
        do not: with ``deepest`` (its deepest layers train) a 1×1 deepest feature map, or a decoder that pools each
        image to 1×1 before one (:func:`pools_before_batchnorm`)."""
        if deepest and count * (h // self.output_stride) * (w // self.output_stride) < 2:
            return f"one {h}×{w} image has a 1×1 deepest feature map", " or at a larger image size"
        if self.pools_before_batchnorm and count < 2:
            decoder = self.config.get("arch") or type(self.decoder).__name__
            return f"one image, whose features the {decoder} decoder pools to 1×1 before a BatchNorm layer", ""
        return None

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` in [0, 1] → the encoder's input: normalised by ``mean``/``std``, in the model's dtype (so that
        e.g. float64 images run through float32 weights)."""
        return (images.to(self.mean.dtype) - self.mean) / self.std

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        return list(self.encoder(self.normalize(images)))

    def forward(self, images: torch.Tensor, groups: Optional[torch.Tensor] = None) -> CosegOutput:
        size = self.check_images(images)
        encoder_statistics_train = self.encoder.training and not self._encoder_statistics_frozen
        deepest_statistics_train = self.training and (encoder_statistics_train or self.group_levels > 0)
        too_few = self._too_few_values(images.shape[0], *size, deepest_statistics_train) if self.training else None
        if too_few is not None:
            raise ValueError(f"a training batch of {too_few[0]}, and BatchNorm in training mode needs two values per "
                             f"channel: train on more images per batch{too_few[1]} (model.eval() to predict)")
        features = self.encode(images)
        if self.group_levels:
            if groups is None:
                groups = torch.arange(images.shape[0], device=images.device)
            check_shape(groups, [str(images.shape[0])], "groups")
            prior = self._prior_maps(self._class_features(images, features[-1]), groups=groups)
            first = len(features) - self.group_levels
            for i, module in enumerate(self.group_consensus):
                level = features[first + i]
                extra = None if prior is None else resize_maps(prior, tuple(level.shape[-2:]))
                features[first + i] = module(level, groups, extra)
        return self.decode(features, size)

    def _class_features(self, images: torch.Tensor, deepest: torch.Tensor) -> Optional[torch.Tensor]:
        """The semantic prior's (B, C', h, w) class features of ``images`` (B, 3, H, W) whose encoder features end
        with ``deepest`` (None without a prior)."""
        if self.semantic_prior is None:
            return None
        normalized = None if self.semantic_prior.trunk is None else self.normalize(images)
        return self.semantic_prior.class_features(deepest, normalized)

    def _prior_maps(self, class_features: Optional[torch.Tensor], groups: Optional[torch.Tensor] = None,
                    group_probabilities: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """(B, PRIOR_CHANNELS, h, w) semantic-prior maps of the class features (None without a prior); the group
        mixture of classes is the mean over ``groups`` unless ``group_probabilities`` (B, K) are given."""
        if self.semantic_prior is None or class_features is None:
            return None
        if group_probabilities is None:
            group_probabilities = group_mean(self.semantic_prior.probabilities(class_features), groups)
        return self.semantic_prior.maps(class_features, group_probabilities)

    def decode(self, features: list[torch.Tensor], size: tuple[int, int]) -> CosegOutput:
        decoded = self.decoder(features)
        logits = self.mask_head(decoded)
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        s = self.embedding_stride
        return CosegOutput(logits, self.embedding_head(decoded, (size[0] // s, size[1] // s)))

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, groups: Optional[torch.Tensor] = None, flip: bool = False,
                edges: Optional[EdgeFilter] = None) -> torch.Tensor:
        """Foreground probabilities (B, 1, H, W), computed in eval mode; every module's mode is restored. ``groups``:
        (B,) group ids; without them each image is a group of one (no consensus: :meth:`predict_group` predicts
        one group). Each image is compared with at most ``max_references`` images of its group, as in
        :meth:`predict_group`. ``flip``: test-time augmentation, the logits averaged with those of the mirrored
        images (twice the time). ``edges``: the probabilities guided-filtered by their images (:class:`EdgeFilter`)."""
        with in_mode(self, False):
            logits, _ = self._combined_outputs(lambda x: [self._outputs_by_group(x, groups)], images, flip,
                                               embeddings=False)
            return self._probabilities(logits, images, edges)

    def _outputs_by_group(self, images: torch.Tensor, groups: Optional[torch.Tensor]) -> CosegOutput:
        """The outputs of ``images`` (B, 3, H, W) with group ids ``groups`` (B,): one pass, but a group of more than
        ``max_references`` images compared with that many of its images (:meth:`_group_outputs`)."""
        members = [] if groups is None or not self.group_levels else group_index(groups)
        if all(len(m) <= self.max_references for m in members):
            return self(images, groups)
        check_shape(groups, [str(images.shape[0])], "groups")
        outputs = [o for m in members for o in self._group_outputs(images[m], len(m))]
        inverse = torch.argsort(torch.cat(members))
        return CosegOutput(torch.cat([o.mask_logits for o in outputs])[inverse],
                           torch.cat([o.embeddings for o in outputs])[inverse])

    @torch.inference_mode()
    def predict_group(self, images: torch.Tensor, chunk_size: int = 16, refinement: Optional[GroupRefinement] = None,
                      flip: bool = False, edges: Optional[EdgeFilter] = None,
                      statistics: Optional[GroupStatistics] = None) -> torch.Tensor:
        """Foreground probabilities (N, 1, H, W) of the N images of one group, decoded ``chunk_size`` images at a
        time with a consensus shared by the whole group (the same result as one pass over all N, in bounded
        memory: a first pass keeps only the deep features' keys of every image; beyond ``max_references`` images,
        each is compared with that many reference images of the group). ``statistics``: the BatchNorm
        statistics adapted to the group first (:class:`GroupStatistics`, one more pass over the whole group, or over
        ``max_references`` of its images, :func:`statistics_images`; in chunks of ``STATISTICS_PIXELS``:
        :meth:`_statistics_pass`).
        ``refinement``: optional group refinement through the pixel embeddings (:class:`GroupRefinement`).
        ``flip``: test-time augmentation, the group's logits (and embeddings) averaged with those of the mirrored
        group (twice the time). ``edges``: the final probabilities guided-filtered by their images
        (:class:`EdgeFilter`)."""
        if whole_number("chunk_size", chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        with in_mode(self, False):
            adapted = (nullcontext() if statistics is None else
                       statistics.adapted(self, lambda: self._statistics_pass(images), images.shape[0],
                                          min(images.shape[0], self.max_references)))
            with adapted:
                logits, embeddings = self._combined_outputs(lambda x: self._group_outputs(x, chunk_size), images,
                                                            flip, embeddings=refinement is not None)
            if refinement is not None:
                logits = refinement(logits, embeddings)
            return self._probabilities(logits, images, edges)

    def _statistics_pass(self, images: torch.Tensor) -> None:
        """The pass :class:`GroupStatistics` measures a group's BatchNorm statistics in: the group's images (at most
        ``max_references`` of them: :func:`statistics_images`) in one batch while they hold at most
        ``STATISTICS_PIXELS`` pixels, so that they are the group's statistics whatever the chunk size and the order
        of the images. A larger group is measured in chunks of that many pixels, in the order of the images' content
        (so the chunks do not depend on the order either; for a decoder that pools each image to 1×1 before a
        BatchNorm layer, a last chunk of one image joins the one before), each chunk seeing the group's consensus;
        each layer pools its inputs over the chunks (:class:`GroupStatistics` says how that differs from one pass),
        and the encoder runs once per image (:meth:`_chunk_outputs` keeps its features for the decoder). The
        prediction is a pass of its own: this pass's layers normalise by their batch's statistics, the prediction's
        by the blend of the training and the whole group's statistics, known only once the whole group has passed."""
        positions = statistics_images(images, self.max_references)
        h, w = self.check_images(images)
        too_few = self._too_few_values(len(positions), h, w)
        if too_few is not None:
            raise GroupTooSmall(f"group statistics need two values per channel in every BatchNorm layer, and a group "
                                f"of {too_few[0]}: predict it without group statistics{too_few[1]}")
        smallest = 2 if self.pools_before_batchnorm else 1  # images a chunk needs
        per_pass = max(smallest, STATISTICS_PIXELS // (h * w))
        if len(positions) <= per_pass:
            self._group_outputs(images[positions], len(positions))
            return
        by_content = sorted(positions.tolist(), key=lambda i: image_digest(images[i].cpu().numpy()))
        chunks = list(images[by_content].split(per_pass))
        if len(chunks[-1]) < smallest:
            chunks[-2:] = [torch.cat(chunks[-2:])]
        for _ in self._chunk_outputs(chunks):  # only the statistics are wanted, not the outputs
            pass

    @staticmethod
    def _probabilities(logits: torch.Tensor, images: torch.Tensor, edges: Optional[EdgeFilter]) -> torch.Tensor:
        probs = torch.sigmoid(logits)
        return probs if edges is None else edges(probs, images)

    @staticmethod
    def _combined_outputs(run: Callable[[torch.Tensor], list[CosegOutput]], images: torch.Tensor, flip: bool,
                          embeddings: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The mask logits (and, if ``embeddings``, the unit pixel embeddings) of ``run(images)``'s chunks joined;
        with ``flip`` averaged with those of ``run`` on the mirrored images, mirrored back (embeddings
        re-normalised)."""
        def joined(x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
            outputs = run(x)
            return (torch.cat([o.mask_logits for o in outputs]),
                    torch.cat([o.embeddings for o in outputs]) if embeddings else None)

        logits, pixels = joined(images)
        if flip:
            mirrored_logits, mirrored_pixels = joined(images.flip(-1))
            logits = (logits + mirrored_logits.flip(-1)) / 2
            if pixels is not None and mirrored_pixels is not None:
                pixels = F.normalize(pixels + mirrored_pixels.flip(-1), dim=1)
        return logits, pixels

    def _group_outputs(self, images: torch.Tensor, chunk_size: int,
                       feature_budget_bytes: int = 1 << 30) -> list[CosegOutput]:
        """Outputs of a group's images, ``chunk_size`` at a time, every chunk seeing the whole group's consensus
        (:meth:`_chunk_outputs`)."""
        n = images.shape[0]
        if self.group_levels and n <= min(chunk_size, self.max_references):
            return [self(images, torch.zeros(n, dtype=torch.long, device=images.device))]
        return list(self._chunk_outputs(images.split(chunk_size), feature_budget_bytes))

    def _chunk_outputs(self, chunks: Sequence[torch.Tensor], feature_budget_bytes: int = 1 << 30
                       ) -> Iterator[CosegOutput]:
        """The outputs of a group's ``chunks`` (its images in group order), one chunk after the other, every chunk
        seeing the whole group's consensus. The first pass keeps each chunk's encoder features while they fit in
        ``feature_budget_bytes`` (so the second pass decodes them without encoding again); chunks beyond the budget
        are encoded a second time, to the same features (:class:`GroupStatistics` counts each image once per
        layer)."""
        if not self.group_levels:
            yield from (self(chunk) for chunk in chunks)
            return
        kept: list[Optional[tuple[list[torch.Tensor], Optional[torch.Tensor]]]] = []
        used = 0

        def keeping(chunk: torch.Tensor) -> tuple[list[torch.Tensor], Optional[torch.Tensor]]:
            nonlocal used
            features, classes = self._encoded(chunk)
            nbytes = sum(f.numel() * f.element_size() for f in features + ([] if classes is None else [classes]))
            fits = used + nbytes <= feature_budget_bytes
            kept.append((features, classes) if fits else None)
            used += nbytes if fits else 0
            return features, classes

        context = self._context_of_keys([self._chunk_keys(*keeping(chunk)) for chunk in chunks])
        start = 0
        for at, (chunk, stored) in enumerate(zip(chunks, kept)):
            kept[at] = None  # decoded: its features are not needed again
            yield self._decoded_in_context(chunk, context, range(start, start + len(chunk)), stored)
            start += len(chunk)

    def _encoded(self, images: torch.Tensor) -> tuple[list[torch.Tensor], Optional[torch.Tensor]]:
        """The encoder features of ``images`` and their semantic-prior class features (None without a prior)."""
        self.check_images(images)
        features = self.encode(images)
        return features, self._class_features(images, features[-1])

    def _chunk_keys(self, features: list[torch.Tensor], classes: Optional[torch.Tensor]
                    ) -> tuple[list[torch.Tensor], Optional[torch.Tensor]]:
        """A chunk's unit keys at each consensus level and its semantic-prior class probabilities (or None)."""
        keys = [m.keys(f).float() for m, f in zip(self.group_consensus, features[-self.group_levels:])]
        probabilities = (self.semantic_prior.probabilities(classes)
                         if self.semantic_prior is not None and classes is not None else None)
        return keys, probabilities

    def _context_of_keys(self, chunks: list[tuple[list[torch.Tensor], Optional[torch.Tensor]]]) -> GroupContext:
        """The :class:`GroupContext` of a group from its chunks' ``_chunk_keys``, in group order."""
        if not chunks:
            raise ValueError("a group context needs at least one image")
        group_keys = [torch.cat([keys[level] for keys, _ in chunks]) for level in range(self.group_levels)]
        positions = reference_images(group_keys[0], self.max_references)
        group_keys = [k[positions] for k in group_keys]
        probabilities = [p for _, p in chunks if p is not None]
        return GroupContext(group_keys, [group_prototypes(k) for k in group_keys], positions,
                            torch.cat(probabilities).mean(0, keepdim=True) if probabilities else None,
                            sum(len(keys[0]) for keys, _ in chunks))

    def _decoded_in_context(self, chunk: torch.Tensor, context: GroupContext, rows: Sequence[int],
                            encoded: Optional[tuple[list[torch.Tensor], Optional[torch.Tensor]]] = None
                            ) -> CosegOutput:
        """The outputs of ``chunk``, the group's images at positions ``rows``, with the group's consensus
        (``encoded``: the chunk's ``_encoded`` output if kept, else it is encoded again)."""
        size = self.check_images(chunk)
        features, classes = self._encoded(chunk) if encoded is None else encoded
        features = list(features)
        n = context.size
        positions = torch.as_tensor(list(rows), dtype=torch.long, device=chunk.device)
        inside = not len(positions) or 0 <= int(positions.min()) <= int(positions.max()) < n
        if len(positions) != len(chunk) or not inside:
            raise ValueError(f"rows must give the group positions (0 to {n - 1}) of the chunk's {len(chunk)} images, "
                             f"got {list(rows)}")
        first = -self.group_levels
        keys = [module.keys(deep).float() for module, deep in zip(self.group_consensus, features[first:])]
        self_mask = self_references(keys, positions, context)
        prior = self._prior_maps(classes, group_probabilities=None if context.probabilities is None
                                 else context.probabilities.expand(len(chunk), -1))
        for level, module in enumerate(self.group_consensus):
            deep = features[first + level]
            maps = consensus_maps(keys[level], context.keys[level], context.prototypes[level], self_mask)
            extra = None if prior is None else resize_maps(prior, tuple(deep.shape[-2:]))
            features[first + level] = module.fuse_maps(deep, maps, extra)
        return self.decode(features, size)

    @torch.inference_mode()
    def chunk_keys(self, chunk: torch.Tensor, flip: bool = False) -> Optional[ChunkKeys]:
        """The part of a group's context that comes from ``chunk`` (float (B, 3, H, W)), and from its mirror image
        with ``flip``; None for a model without group consensus. :meth:`context_of` joins the chunks' parts."""
        if not self.group_levels:
            return None
        with in_mode(self, False):
            plain = self._chunk_keys(*self._encoded(chunk))
            return ChunkKeys(plain, self._chunk_keys(*self._encoded(chunk.flip(-1))) if flip else None)

    def context_of(self, chunks: Sequence[Optional[ChunkKeys]]) -> Optional[StreamedContext]:
        """A group's context from its chunks' :meth:`chunk_keys`, in group order (None without group consensus or
        without chunks: there is nothing to predict then)."""
        parts = [c for c in chunks if c is not None]
        if not self.group_levels or not parts:
            return None
        mirrored = [c.mirrored for c in parts if c.mirrored is not None]
        if mirrored and len(mirrored) != len(parts):
            raise ValueError("every chunk's keys must be taken with the same flip")
        return StreamedContext(self._context_of_keys([c.plain for c in parts]),
                               self._context_of_keys(mirrored) if mirrored else None)

    def group_context(self, chunks: Iterable[torch.Tensor], flip: bool = False) -> Optional[StreamedContext]:
        """What each chunk of a group needs from the whole group, from one pass over its images (float (B, 3, H, W)
        chunks in group order), for :meth:`predict_chunk`: a group too large to hold in memory is predicted in two
        passes over its files, with the same result as :meth:`predict_group`. ``flip``: also the mirrored group's
        context (for ``predict_chunk(..., flip=True)``). None for a model without group consensus."""
        return self.context_of([self.chunk_keys(chunk, flip) for chunk in chunks])

    @torch.inference_mode()
    def predict_chunk(self, chunk: torch.Tensor, context: Optional[StreamedContext], rows: Sequence[int],
                      flip: bool = False, edges: Optional[EdgeFilter] = None) -> torch.Tensor:
        """Foreground probabilities (B, 1, H, W) of ``chunk``, the group's images at positions ``rows`` (in the
        order its context was taken), with the group's ``context`` (:meth:`group_context`, given the same
        ``flip``); ``edges`` as in :meth:`predict_group`."""
        if self.group_levels and context is None:
            raise ValueError("this model has a group consensus: predict_chunk needs the group's context")
        if flip and context is not None and context.mirrored is None:
            raise ValueError("flip=True needs a context made with flip=True")

        def logits_of(images: torch.Tensor, group: Optional[GroupContext]) -> torch.Tensor:
            return (self(images) if group is None else self._decoded_in_context(images, group, rows)).mask_logits

        with in_mode(self, False):
            logits = logits_of(chunk, None if context is None else context.plain)
            if flip:
                mirrored = logits_of(chunk.flip(-1), None if context is None else context.mirrored)
                logits = (logits + mirrored.flip(-1)) / 2
            return self._probabilities(logits, chunk, edges)

    def train(self, mode: bool = True) -> "CosegNet":
        """Like ``nn.Module.train``, but a frozen encoder stays in eval mode (its BatchNorm statistics fixed), and
        so do the encoder's BatchNorm layers after :meth:`freeze_encoder_statistics`."""
        super().train(mode)
        self._set_encoder_mode()
        return self

    def _set_encoder_mode(self) -> None:
        """The encoder in the model's mode, but in eval mode while frozen, its BatchNorm layers in eval mode while
        their statistics are frozen."""
        self.encoder.train(self.training and not self._encoder_frozen)
        if self._encoder_statistics_frozen:
            for module in self.encoder.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()

    def freeze_encoder_statistics(self) -> None:
        """Keep the encoder's BatchNorm statistics (its ImageNet ones) while its weights train: small batches of a
        few groups give noisy statistics."""
        self._encoder_statistics_frozen = True
        self._set_encoder_mode()

    def freeze_encoder(self) -> None:
        """Stop training the encoder: no gradients for its parameters, BatchNorm statistics fixed (eval mode)."""
        self.encoder.requires_grad_(False)
        self._encoder_frozen = True
        self._set_encoder_mode()

    def unfreeze_encoder(self) -> None:
        """Undo :meth:`freeze_encoder`: the encoder trains again (in the model's current mode; its BatchNorm
        statistics stay fixed after :meth:`freeze_encoder_statistics`)."""
        self.encoder.requires_grad_(True)
        self._encoder_frozen = False
        self._set_encoder_mode()

    def save(self, path: PathLike, metadata: Optional[dict[str, str]] = None) -> None:
        """Write the weights and :attr:`config` to the safetensors file ``path`` (atomically), with optional extra
        string ``metadata``. :func:`load_model` rebuilds the model from it."""
        write_checkpoint(path, self.state_dict(), self.config, metadata, kind=MODEL_KIND)


def check_encoder_name(encoder: str) -> None:
    """Raise ``ValueError`` in one line for an encoder name neither smp nor timm (``tu-<timm name>``) knows (smp's
    own error lists its 76 names on one line)."""
    if encoder.startswith("tu-"):
        if not timm.is_model(encoder[3:]):
            raise ValueError(f"unknown encoder '{encoder}': timm has no model '{encoder[3:]}'")
    elif encoder not in smp.encoders.get_encoder_names():
        raise ValueError(f"unknown encoder '{encoder}': smp has no encoder of that name (e.g. resnet34, "
                         "efficientnet-b0, mit_b0; a timm model as tu-<timm name>)")


def create_model(arch: str = "unet", encoder: str = DEFAULT_ENCODER, weights: Optional[PathLike] = "imagenet",
                 embedding_dim: int = 32, embedding_hidden_channels: Optional[int] = None, embedding_stride: int = 4,
                 group_levels: int = 0, semantic_prior: bool = False, frozen_prior: bool = False,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> CosegNet:
    """Build a :class:`CosegNet` from names.

    arch: a name in ``ARCHITECTURES`` (unet, fpn, deeplabv3plus, ...); encoder: an smp encoder name (``tu-<timm
    name>`` for timm encoders). weights: ``"imagenet"`` (offline for ``tu-tf_efficientnet_lite0/1/2`` and smp's
    older names of them, ``timm-tf_efficientnet_lite0/1/2``; downloaded by smp/timm for other encoders), None
    (random), or a local ``.safetensors``/``.pth`` file (timm key names for ``tu-`` encoders, the encoder's own key
    names otherwise). embedding_hidden_channels: width of the embedding head's hidden layer (default: the
    decoder's output channels). embedding_stride: the pixel embeddings are at 1/stride of the input size (4 by
    default: the metric head and its loss cost ~16× less than at full size, and the IS-Triplet loss samples
    pixels, so it needs no full-resolution map). group_levels: how many of the
    encoder's deepest feature maps get a group-consensus module (0 = a single-image model; at most
    ``DECODED_DEEPEST_LEVELS[arch]`` for an architecture whose decoder skips a map). semantic_prior: those
    modules also fuse the class-activation maps of the group's common ImageNet classes, read by the encoder's
    frozen classifier (:mod:`coseg.models.semantic_prior`; timm EfficientNet/ResNet-style encoders, with weights
    that hold the classifier; with weights=None that classifier is random, as :func:`load_model` builds a model
    before loading its file). frozen_prior: the prior reads a frozen copy of the ImageNet encoder instead of the
    fine-tuned one (its maps do not drift in training; one more encoder pass per image). mean/std: input
    normalisation per RGB channel of images in [0, 1], 3 finite numbers each, std > 0 (default: what the encoder's
    ImageNet weights expect; for a non-``tu-`` encoder not downloaded, e.g. from a local file, timm's ImageNet
    values, so give them for weights trained with others)."""
    embedding_dim = whole_number("embedding_dim", embedding_dim)
    embedding_stride = whole_number("embedding_stride", embedding_stride)
    group_levels = whole_number("group_levels", group_levels)
    if embedding_hidden_channels is not None:
        embedding_hidden_channels = whole_number("embedding_hidden_channels", embedding_hidden_channels)
    for name, flag in (("semantic_prior", semantic_prior), ("frozen_prior", frozen_prior)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    architecture = ARCHITECTURES.get(arch)
    decoded = DECODED_DEEPEST_LEVELS.get(arch)
    if decoded is not None and group_levels > decoded:
        raise ValueError(f"group_levels must be in [0, {decoded}] for {arch}, got {group_levels}: its decoder does "
                         f"not read the encoder's feature map {decoded + 1} levels from the deepest, so a "
                         f"group-consensus module there would never train (--group-levels)")
    check_encoder_name(encoder)
    download = weights == "imagenet" and not has_offline_imagenet(encoder)
    try:
        with downloading_weights(encoder) if download else nullcontext():
            net = architecture(encoder_name=encoder, encoder_weights=smp_imagenet_argument(encoder) if download
                               else None, classes=1)
    except ValueError as err:  # smp refusing the pair, e.g. a ViT: "Unsupported model downsampling pattern."
        raise ValueError(f"cannot build {arch} with encoder '{encoder}': {err}") from err
    if weights is not None and not download:
        load_encoder_weights(net.encoder, weights, encoder)
    mean, std = input_normalization(encoder, mean, std, downloaded=download)
    decoder_channels = net.segmentation_head[0].in_channels
    hidden = decoder_channels if embedding_hidden_channels is None else embedding_hidden_channels
    config = {
        "arch": arch,
        "encoder": encoder,
        "embedding_dim": embedding_dim,
        "embedding_hidden_channels": hidden,
        "embedding_stride": embedding_stride,
        "group_levels": group_levels,
        "semantic_prior": semantic_prior,
        "frozen_prior": frozen_prior,
        "mean": mean,
        "std": std,
    }
    if frozen_prior and not semantic_prior:
        raise ValueError("frozen_prior is the semantic prior's own encoder: it needs semantic_prior=True")
    trunk = copy.deepcopy(net.encoder) if frozen_prior else None
    prior = (build_semantic_prior(encoder, net.encoder.out_channels[-1], weights, trunk=trunk) if semantic_prior
             else None)
    return CosegNet(net.encoder, net.decoder, decoder_channels, embedding_dim=embedding_dim,
                    embedding_hidden_channels=hidden, embedding_stride=embedding_stride, group_levels=group_levels,
                    semantic_prior=prior, mean=config["mean"], std=config["std"], config=config)
