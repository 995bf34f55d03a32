"""Configuration of a co-segmentation training run. Each field's ``help`` is shown by ``coseg train --help``."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Sequence


# Inference defaults: one value for the CLI's option defaults and coseg.models.EdgeFilter's.
EDGE_RADIUS = 0.08  # edge filter window radius, fraction of the image side (chosen on validation groups)
EDGE_EPS = 1e-3
MAX_COLOUR_SCALE = 4.0  # colour cut side / model input side: beyond it the cut's images outgrow memory, not detail


def option(default, help: str, path: bool = False):  # noqa: A002 - mirrors click's wording
    """A config field with its ``--help`` text; ``path``: it names a file or folder, whose ``~`` the config loader
    expands (:func:`coseg.engine.load_config`)."""
    metadata = {"help": help, "path": path}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def check_normalization(mean: Optional[Sequence[float]], std: Optional[Sequence[float]],
                        names: tuple[str, str] = ("mean", "std")) -> None:
    """Raise ``ValueError`` naming the option (``names``) unless ``mean`` and ``std`` (per RGB channel, for images
    in [0, 1]), each None (not given) or 3 finite numbers, std > 0."""
    for name, values, positive in ((names[0], mean, False), (names[1], std, True)):
        if values is None:
            continue
        finite = [v for v in values if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)]
        if len(values) != 3 or len(finite) != 3 or (positive and min(finite) <= 0):
            raise ValueError(f"{name} must be 3 finite numbers{' > 0' if positive else ''}, one per RGB channel of "
                             f"images in [0, 1] (e.g. 0.5,0.5,0.5), got {list(values)}")


def check_input_normalization(cfg: Any) -> None:
    """Raise ``ConfigError`` naming the option unless a training config's ``input_mean`` and ``input_std`` are each
    empty (the encoder's own) or valid (:func:`check_normalization`)."""
    try:
        check_normalization(cfg.input_mean or None, cfg.input_std or None, ("input_mean", "input_std"))
    except ValueError as e:
        from coseg.engine.config import ConfigError  # torch comes with coseg.engine: only when needed

        raise ConfigError(str(e)) from None


INPUT_NORMALIZATION_HELP = ("per RGB channel of images in [0, 1], 3 comma-separated numbers; default: what the "
                            "encoder's weights expect. Saved in the model file: evaluation, prediction and export use "
                            "it.")


MASKS_HELP = ("Folder of the ground-truth masks when they are not in the data set: icoseg layout: instead of "
              "ground_truth/ (MASKS/<group>/<stem>.png); folders layout: masks matched to the images by relative "
              "folder and stem (the internet and sbcoseg layouts keep masks beside the images). Default: the data "
              "set's own.")


@dataclass
class CosegTrainConfig:
    data: str = option("", "Data set root folder; required (on the command line or in --config).", path=True)
    masks: Optional[str] = option(None, MASKS_HELP, path=True)
    layout: str = option("auto", "Data layout: icoseg, internet, sbcoseg, folders, or auto (detect).")
    output: str = option("runs/coseg", "Run folder: config.yaml, last.*/best.* checkpoints, log.csv (an ensemble: "
                         "each member's log and checkpoints in member<i>/).", path=True)
    overwrite: bool = option(False, "Train into an --output folder that already holds a run, writing its checkpoints, "
                             "log and config anew (default: refuse, so a finished run is not lost; --resume continues "
                             "it).")
    splits: Optional[str] = option(None, "Splits JSON file (e.g. iCoseg splits.json); default: <data>/splits.json if "
                                   "present.", path=True)
    train_split: Optional[str] = option(None, "Key of the training group list in the splits file (e.g. train30). "
                                        "Given on the command line, it replaces the --config file's train_groups.")
    train_groups: list[str] = option([], "Explicit training groups (comma-separated); default: all groups, or "
                                     "--train-split. Given on the command line, they replace the --config file's "
                                     "train_split and splits.")
    val_groups: list[str] = option([], "Explicit validation groups (a name may be the start of one folder's name, "
                                   "e.g. its number, or whole words found in no other); default: hold out "
                                   "--val-fraction of the training groups. Given on the command line, they replace the "
                                   "--config file's val_fraction.")
    val_fraction: float = option(0.15, "Share of training groups held out for validation / model selection (0 = none). "
                                 "Not with --val-groups; given on the command line, it replaces the --config file's "
                                 "val_groups.")
    image_size: int = option(224, "Training and inference size in pixels (square, multiple of 32).")
    epochs: int = option(30, "Number of epochs (with --minutes: at most this many). An ensemble without --minutes "
                         "shares them: each of its models trains epochs / members (rounded, at least 1).")
    minutes: Optional[float] = option(None, "Time budget in minutes (0 or unset: none): stop after it (the schedule "
                                      "follows elapsed time). An ensemble's models share it.")
    members: int = option(3, "Train an ensemble: this many models one after another (seeds seed, seed+1, ...; the "
                          "same validation groups), sharing the time budget (or, without --minutes, the epochs); "
                          "inference averages their probabilities. OUTPUT/member<i>/ holds each run, "
                          "OUTPUT/best.safetensors the ensemble. 1 = one model. On iCoseg three 10-minute runs beat "
                          "one 30-minute run on both validations (docs/icoseg_experiments.md).")
    groups_per_batch: int = option(2, "Groups per batch (P).")
    images_per_group: int = option(4, "Images of each group per batch (K).")
    arch: str = option("unet", "Decoder architecture (smp name: unet, fpn, deeplabv3plus, ...).")
    encoder: str = option("tu-tf_efficientnet_lite0", "Encoder name (smp/timm).")
    weights: Optional[str] = option("imagenet", "Encoder weights: imagenet (offline for tf_efficientnet_lite0/1/2), a "
                                    "local .safetensors/.pth file (the timm model's or the smp encoder's state dict, "
                                    "also saved from DDP with its module. prefix), or none.", path=True)
    input_mean: list[float] = option([], "Input normalisation mean " + INPUT_NORMALIZATION_HELP + " Give it and "
                                     "--input-std for a local --weights file of a non-timm smp encoder (resnet34, "
                                     "efficientnet-b0, mit_b0, ...), which otherwise gets timm's ImageNet values "
                                     "0.485,0.456,0.406 / 0.229,0.224,0.225 (smp's own are on the network), or for "
                                     "weights trained with other statistics (e.g. 0.5,0.5,0.5 / 0.5,0.5,0.5).")
    input_std: list[float] = option([], "Input normalisation standard deviation (> 0) " + INPUT_NORMALIZATION_HELP
                                    + " See --input-mean.")
    embedding_dim: int = option(32, "Dimension of the per-pixel embedding (metric head).")
    group_levels: int = option(2, "Deepest encoder levels with a group-consensus module (0 = single-image model; at "
                               "most 1 with --arch deeplabv3plus, whose decoder reads no other level).")
    semantic_prior: bool = option(True, "Group-consensus modules also fuse class-activation maps of the group's "
                                  "common ImageNet classes (the encoder's frozen ImageNet classifier; timm encoders; "
                                  "used when group_levels >= 1).")
    frozen_prior: bool = option(False, "The semantic prior reads a frozen copy of the ImageNet encoder, so its class "
                                "maps do not drift as the encoder is fine-tuned (one more encoder pass per image, "
                                "without gradients).")
    lr: float = option(1e-3, "Learning rate of decoder and heads (AdamW).")
    encoder_lr_scale: float = option(0.1, "Encoder learning rate = lr × this; 0 = frozen encoder (no gradients, fixed "
                                     "BatchNorm statistics; trains ~1.4x faster).")
    encoder_statistics: str = option("train", "Encoder BatchNorm statistics while fine-tuning: train (updated from "
                                     "each batch) or frozen (the pretrained ones kept; the weights still train). On "
                                     "iCoseg frozen made each model better alone, but not the default inference on "
                                     "validation (docs/icoseg_experiments.md).")
    weight_decay: float = option(1e-4, "AdamW weight decay.")
    ema_decay: float = option(0.0, "Validate and save an exponential moving average of the weights with this decay "
                              "per step (e.g. 0.995; 0 = off).")
    dice_weight: float = option(1.0, "Weight of the Dice loss.")
    ce_weight: float = option(1.0, "Weight of the (binary) cross-entropy loss.")
    focal_weight: float = option(0.0, "Weight of the focal loss.")
    jaccard_weight: float = option(0.0, "Weight of the Jaccard (IoU) loss.")
    triplet_weight: float = option(0.5, "Weight of the IS-Triplet pixel loss (0 = off).")
    triplet_margin: float = option(0.3, "Margin of the IS-Triplet loss.")
    triplet_pixels: int = option(16, "Pixels sampled per class per image for IS-Triplet.")
    triplet_strategy: str = option("hard", "Pixel sampling: random, or hard (boundary / mis-predicted pixels).")
    triplet_miner: str = option("semi_hard", "Triplets among the sampled pixels of a group: semi_hard, batch_hard or "
                                "batch_all (semi_hard and batch_all keep many triplets per anchor: use few "
                                "--triplet-pixels). batch_hard collapsed the embeddings to one vector on iCoseg "
                                "(docs/icoseg_experiments.md).")
    augment: bool = option(True, "Random crop/flip/affine/colour augmentation (kornia).")
    crop_scale: float = option(0.5, "Random resized crop: the smallest share of the image's area a crop keeps (in (0, "
                               "1]; the crop keeps between this and all of it).")
    colour_jitter: float = option(0.3, "Colour jitter strength s in [0, 1]: brightness, contrast and saturation "
                                  "factors drawn in [1 - s, 1 + s], hue shifted by up to s / 6 of the colour circle "
                                  "(0 = none).")
    paste_distractor_p: float = option(0.0, "Per image, probability of pasting in an object of another group of the "
                                       "batch, labelled background (it is not common to the group).")
    paste_background_p: float = option(0.0, "Per image, probability of putting its foreground on the background of "
                                       "another group's image.")
    paste_common_background_p: float = option(0.0, "Per group, probability of putting the foregrounds of all its "
                                              "images on the images of one other group of the batch: a background the "
                                              "group has in common (with that group's object in it) is labelled "
                                              "background.")
    seed: int = option(0, "Random seed (runs on CPU are deterministic for a seed).")
    device: str = option("auto", "auto, cpu, cuda or cuda:N.")
    amp: bool = option(True, "Mixed precision on CUDA.")
    channels_last: bool = option(True, "channels_last memory format (faster convolutions on CUDA and CPU).")
    workers: int = option(0, "DataLoader worker processes.")
    cache_dir: Optional[str] = option(None, "Folder for decoded-image cache files (default: in memory only).",
                                      path=True)
    quiet: bool = option(False, "No progress bars.")

    REPLACED_BY: ClassVar[dict[str, tuple[str, ...]]] = {"train_groups": ("train_split", "splits"),
                                                         "train_split": ("train_groups",),
                                                         "val_groups": ("val_fraction",),
                                                         "val_fraction": ("val_groups",)}
    """A command-line option → the config file's options it replaces: they choose the training (validation) groups
    another way (:func:`coseg.engine.load_config`)."""

    def __post_init__(self) -> None:
        check_input_normalization(self)
