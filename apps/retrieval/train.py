"""Retrieval training: data → model → method components → the shared engine, in one or two stages.

``mode="staged"`` (default, CPU-first): the backbone's pooled features of every training image (and of a few
views) are computed once; stage 1 trains only the embedding head (started from the features' principal axes)
and the loss's parameters on them, so an epoch costs a few matrix products. With ``finetune_epochs`` a stage 2
then fine-tunes backbone and head on images, into ``OUTPUT/finetune/``, from stage 1's best epoch: its model
(``best.safetensors``) and its loss's state (SoftTriple's centres: ``best.loss.safetensors``, written beside the
model file by :meth:`RetrievalLearner.save`); the run's ``best.safetensors`` (with its loss's state) becomes stage
2's best if its validation MAP@R is higher. ``mode="end_to_end"`` trains everything on images from the start.
The same code runs on CPU and CUDA, and under torchrun (DDP).

Validation (best-checkpoint selection) uses classes held out from the training split, never the test split.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional

import kornia.augmentation as K
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from apps.retrieval.components import build_components
from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.datasets import RETRIEVAL_LAYOUTS, Record, RetrievalSplit, load_retrieval_split
from apps.retrieval.features import (FeatureDataset, cached_features, inference_features, inference_views,
                                     readable_features, unreadable_files)
from apps.retrieval.head_init import HEAD_INITS, check_head_init, init_head
from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.inference import Embedded, embed_readable, require_every
from apps.retrieval.learner import RetrievalLearner, loss_state_path
from apps.retrieval.model import RetrievalModel, check_image_size, create_retrieval_model
from apps.retrieval.pooling import POOLINGS
from coseg.atomic import write_bytes_atomic
from coseg.data import (
    ImageCache, Problem, Sample, draw_units, groups_sharing_images, holdout_groups, printable, resolve_groups,
    sharing_pairs,
)
from coseg.engine import (
    RESUMABLE, ConfigError, DistInfo, Engine, FitResult, RunFolder, adamw, check_at_least, check_choice,
    check_fraction, check_one_validation_choice, check_seed, distributed_run, load_config, lr_factor, once,
    training_lock, usage_errors,
)
from coseg.engine.distributed import check_same_files, world_size
from coseg.engine.trainer import UnreadableLog
from coseg.models import checkpoint_metadata
from coseg.models.checkpoint import seen_metadata
from coseg.report.build import remove_report
from coseg.report.training import FINETUNE_DIR
from coseg.train import NO_WEIGHTS, check_weights_file, seed_everything, skipped_with_later
from metric.registry import BATCH_SAMPLERS, DISTANCES, LOSSES, MINERS
from metric.retrieval import retrieval_metrics

MODES = ("staged", "end_to_end")
SELECT_METRIC = "MAP@R"
MIN_VAL_CLASSES = 2
RUN_FOLDER = RunFolder(subruns=FINETUNE_DIR, paths=frozenset({"data", "weights", "output", "cache_dir"}),
                       resumable=RESUMABLE | {"threads", "batch_size", "finetune_epochs", "finetune_minutes"},
                       extra_files=tuple(loss_state_path(Path(name)).name
                                         for name in ("best.safetensors", "last.safetensors")),
                       remove_report=remove_report)
"""The fine-tuning stage trains in ``OUTPUT/finetune/``; ``--resume`` may also change the CPU threads, the images
per inference pass and the fine-tuning stage's length; the loss's states beside the model files go with the run."""


# --- data ---------------------------------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """The training images (labels 0..C−1 over ``train_classes``) and the held-out validation images (labels over
    ``val_classes``, class-disjoint from training), with the unreadable images, the classes of which none could be
    read (left out of training, not scored by validation) and the problems met reading the index files."""

    train: RetrievalImageDataset
    val: Optional[RetrievalImageDataset]
    train_classes: list[str]
    val_classes: list[str]
    skipped: list[tuple[Path, str]]
    problems: list[Problem]
    unreadable_classes: list[str] = field(default_factory=list)


def split_classes(classes: list[str], cfg: RetrievalTrainConfig,
                  together: Optional[Mapping[str, str]] = None) -> tuple[list[str], list[str]]:
    """(training classes, validation classes) of the training split: ``cfg.val_classes`` (matched tolerantly),
    or ``val_fraction`` of them drawn with ``seed``, or none; validation takes at least 2 and leaves at least 2.
    Classes that ``together`` maps to one key (they hold identical image files: ``groups_sharing_images``) fall on
    one side: drawn as one, and validation classes named sharing images with training classes are refused."""
    together = together or {}
    if cfg.val_classes:
        try:
            val = list(resolve_groups(cfg.val_classes, classes, "class"))
        except ValueError as e:
            raise ValueError(f"--val-classes (held out of the training split '{printable(cfg.train_split)}'): {e}"
                             ) from None
        kept = [c for c in classes if c not in set(val)]
        if len(val) < MIN_VAL_CLASSES or len(kept) < 2:
            raise ValueError(f"--val-classes names {len(val)} of the training split's {len(classes)} classes: "
                             f"validation needs at least {MIN_VAL_CLASSES} (MAP@R over a single class is 100 whatever "
                             "the model) and training 2 (a single class gives no negatives); name others, or leave "
                             "--val-classes unset to draw --val-fraction of them")
        leaks = [f"'{printable(v)}' with '{printable(k)}'" for v, k in sharing_pairs(val, kept, together)]
        if leaks:
            raise ValueError(f"validation classes share images with training classes: {', '.join(leaks)}; validate "
                             "on other classes")
    elif cfg.val_fraction > 0:
        units = len(set(draw_units(classes, together).values()))
        count = max(MIN_VAL_CLASSES, round(cfg.val_fraction * units))
        if units - count < 2:
            shared = " (classes sharing images count once)" if units < len(classes) else ""
            raise ValueError(f"the training split has {units} classes{shared}: too few to hold out {count} for "
                             f"validation and keep 2 for training; set --val-fraction 0 (no validation)")
        val = holdout_groups(classes, number=count, seed=cfg.seed, together=together)[1]
    else:
        return list(classes), []
    chosen = set(val)
    return [c for c in classes if c not in chosen], sorted(val, key=classes.index)


def relabel(records: list[Record], names: list[str], keep: list[str]) -> list[Record]:
    """The records whose class (``names[label]``) is in ``keep``, labelled by position in ``keep``."""
    position = {name: i for i, name in enumerate(keep)}
    return [r._replace(label=position[names[r.label]]) for r in records if names[r.label] in position]


def training_records(cfg: RetrievalTrainConfig) -> tuple[RetrievalSplit, list[Record], list[str], list[str]]:
    """The training split of ``cfg``, the records of its training classes (labelled 0..C−1 over them), the training
    classes and the validation classes, from the split's index (no image is decoded; to keep classes holding
    identical files on one side, files of one size in two classes are read)."""
    split = load_retrieval_split(cfg.data, cfg.train_split, cfg.layout, cfg.train_classes or None)
    together = (groups_sharing_images(Sample(r.path, None, split.classes[r.label]) for r in split.records)
                if cfg.val_classes or cfg.val_fraction > 0 else None)
    train_classes, val_classes = split_classes(split.classes, cfg, together)
    return split, relabel(split.records, split.classes, train_classes), train_classes, val_classes


def load_training_data(cfg: RetrievalTrainConfig, progress: bool = False,
                       check: Optional[Callable[[list[Record], list[str]], None]] = None) -> TrainingData:
    """The training and validation images of ``cfg``, decoded. ``check(training records, training classes)`` runs
    before any image is decoded (e.g. to reject a bad method config early), and again when training classes of
    which no image could be read are left out. Raises ``ValueError`` when no validation class has two readable
    images (validation would score nothing) or only one has readable images (it would score 100 whatever the
    model)."""
    split, train_records, train_classes, val_classes = training_records(cfg)
    if check is not None:
        check(train_records, train_classes)
    cache = ImageCache(cfg.image_size, cache_dir=cfg.cache_dir, progress=progress)
    train = RetrievalImageDataset(train_records, cfg.image_size, cache, substitute=True)
    skipped = list(train.skipped)
    present = set(train.labels.tolist())
    unreadable = [c for i, c in enumerate(train_classes) if i not in present]
    if unreadable:
        first = next(r.path for r in train_records if train_classes[r.label] in unreadable)
        readable = [c for i, c in enumerate(train_classes) if i in present]
        train = RetrievalImageDataset(relabel(train.records, train_classes, readable), cfg.image_size, cache,
                                      substitute=True)
        train_classes = readable
        if check is not None:
            try:
                check(train.records, train_classes)
            except ValueError as e:
                raise ValueError(f"{e}: no image of the training class(es) {', '.join(map(printable, unreadable))} "
                                 f"could be read (first: {printable(first)}: {dict(skipped)[first]})") from None
    val = (RetrievalImageDataset(relabel(split.records, split.classes, val_classes), cfg.image_size, cache)
           if val_classes else None)
    if val is not None:
        check_validation_classes(val.labels, val_classes)
        scored = set(val.labels.tolist())
        unreadable += [c for i, c in enumerate(val_classes) if i not in scored]
    return TrainingData(train, val, train_classes, val_classes, skipped + (val.skipped if val is not None else []),
                        split.problems, unreadable)


def check_validation_classes(labels: torch.Tensor, classes: list[str], lost: str = "") -> None:
    """Raise ``ValueError`` when the validation images of ``labels`` (M,) (over ``classes``) would score nothing
    (:func:`why_unscorable`). ``lost``: why images read at start-up are missing since, added to the message."""
    why = why_unscorable(labels)
    if why == NO_QUERY:
        raise ValueError(f"no validation class has two readable images{lost}, so validation has no query: "
                         f"{', '.join(printable(c) for c in classes)}; name others with --val-classes, or validate "
                         "on none: --val-fraction 0 (without --val-classes)")
    if why == ONE_CLASS:
        readable = classes[int(labels[0])]
        unreadable = [c for c in classes if c != readable]
        raise ValueError(f"only the validation class {printable(readable)} has readable images (none of "
                         f"{', '.join(map(printable, unreadable))} could be read{lost}), and MAP@R over a single "
                         "class is 100 whatever the model; name others with --val-classes, or validate on none: "
                         "--val-fraction 0 (without --val-classes)")


# --- the engine task ----------------------------------------------------------------------------------------------
def percent_metrics(embeddings: torch.Tensor, labels: torch.Tensor, with_nmi: bool = True,
                    ks: tuple[int, ...] = (1, 2, 4, 8)) -> dict[str, float]:
    """:func:`retrieval_metrics` in percent."""
    metrics = retrieval_metrics(embeddings, labels, ks=ks, with_nmi=with_nmi)
    return {name: 100.0 * value for name, value in metrics.items()}


NO_QUERY, ONE_CLASS = "no query", "one class"


def why_unscorable(labels: torch.Tensor) -> Optional[str]:
    """Why the images of ``labels`` (M,) give no retrieval score that depends on the model: :data:`NO_QUERY` when no
    class has two of them, :data:`ONE_CLASS` when a single class has any (R@K, MAP@R and NMI are then 100 whatever
    the model; at least ``MIN_VAL_CLASSES`` are needed); None when they can be scored."""
    counts = labels.bincount() if len(labels) else labels.new_zeros(0)
    if not bool(counts.gt(1).any()):
        return NO_QUERY
    if int(counts.gt(0).sum()) < MIN_VAL_CLASSES:
        return ONE_CLASS
    return None


class Validation:
    """R@1 and MAP@R (percent) of the validation classes: on their cached features through the head (head stage), or on
    their images (a ``RetrievalImageDataset``) through the whole model, leaving out those that can no longer be read
    (noted in ``unreadable`` when given). When too few are left to score (:func:`why_unscorable`), the scores are NaN,
    so that the epoch is not selected, and why is warned once."""

    def __init__(self, labels: torch.Tensor, device: torch.device, features: Optional[torch.Tensor] = None,
                 images: Optional[RetrievalImageDataset] = None, batch_size: int = 32, workers: int = 0,
                 unreadable: Optional[UnreadableLog] = None) -> None:
        self.labels, self.device, self.features, self.images = labels, device, features, images
        self.batch_size, self.workers, self.unreadable = batch_size, workers, unreadable
        self.unscorable = False  # warned that too few validation images are left

    @torch.no_grad()
    def __call__(self, learner: RetrievalLearner) -> dict[str, float]:
        if self.features is not None:
            embeddings, labels = learner.net.embed_features(self.features.to(self.device)), self.labels
        else:
            embeddings, labels = self._embed_readable(learner.net)
            if why_unscorable(labels) is not None:
                if not self.unscorable:
                    tqdm.write(f"warning: only {len(labels)} validation image(s) of {labels.unique().numel()} "
                               f"class(es) can still be read, too few to score (at least {MIN_VAL_CLASSES} classes, "
                               "one with two images): until they can be read again epochs are not scored, and the "
                               "best model stays the best one scored before", file=sys.stderr)
                self.unscorable = True
                return {"R@1": math.nan, "MAP@R": math.nan}
        return percent_metrics(embeddings, labels, with_nmi=False, ks=(1,))

    def _embed_readable(self, net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (M, D) and labels (M,) of the validation images that could be read."""
        assert self.images is not None
        embedded = embed_readable(net, self.images, self.device, self.batch_size, self.workers)
        if self.unreadable is not None:
            for path, problem in unreadable_files(self.images, embedded.unreadable):
                self.unreadable.note(path, problem, "it is left out of the validation score")
        return embedded.values, self.labels[embedded.kept]


class RetrievalTask:
    """One training step (inputs → embeddings → the learner's objective) and validation. Under DDP (``dist``) each
    process embeds its share of the batch and the objective is that of the whole batch, on every process."""

    def __init__(self, learner: RetrievalLearner, validation: Optional[Validation],
                 augmentation: Optional[nn.Module] = None, dist: DistInfo = DistInfo()) -> None:
        self.learner = learner
        self.validation = validation
        self.augmentation = augmentation
        self.dist = dist

    def train_step(self, model: nn.Module, batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
        labels = batch["label"].to(device, non_blocking=True)
        if "features" in batch:
            inputs = batch["features"].to(device, non_blocking=True)
        else:
            inputs = batch["image"].to(device, non_blocking=True).float().div_(255)
            if self.augmentation is not None:
                inputs = self.augmentation(inputs)
            if device.type == "cuda":
                inputs = inputs.contiguous(memory_format=torch.channels_last)
        return self.learner.objective(model(inputs), labels, self.dist)

    def batch_size(self, batch: dict) -> int:
        return int(batch["label"].shape[0])

    def validate(self, model: nn.Module) -> dict[str, float]:
        return {} if self.validation is None else self.validation(model)  # type: ignore[arg-type]


class EpochBatches(Sampler[list[int]]):
    """One engine epoch of ``passes`` passes of the batch sampler ``sampler``; ``set_epoch`` — which the engine
    calls before each epoch's batches are drawn — first calls ``on_epoch()``, then numbers the passes (pass k of
    epoch e is the sampler's epoch (e − 1)·passes + k + 1, so every pass draws new batches)."""

    def __init__(self, sampler: Sampler[list[int]], passes: int = 1,
                 on_epoch: Optional[Callable[[], None]] = None) -> None:
        if passes < 1:
            raise ValueError(f"passes must be >= 1, got {passes}")
        self.sampler = sampler
        self.passes = passes
        self.on_epoch = on_epoch
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        if self.on_epoch is not None:
            self.on_epoch()
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        for k in range(self.passes):
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch((self.epoch - 1) * self.passes + k + 1)
            yield from self.sampler

    def __len__(self) -> int:
        return self.passes * len(self.sampler)  # type: ignore[arg-type]


# --- building blocks ----------------------------------------------------------------------------------------------
def check_config(cfg: RetrievalTrainConfig, resume: bool = False) -> None:
    """Refuse (``ConfigError`` naming the option: a usage error) the values :func:`train` cannot take, before it
    reads anything: names, counts, rates, the validation share, or one set beside the validation classes it would
    not choose (but the run's own on ``resume``: earlier versions saved both, ignoring the share), the stages'
    lengths, options of a stage or head start the run has not, and a weights file that is not there. Those that
    depend on the backbone or the data are refused later, still before any image is decoded."""
    if not cfg.data:
        raise ConfigError("data is required: the data set root folder")
    check_choice(cfg, "mode", MODES)
    check_choice(cfg, "head_init", HEAD_INITS)
    check_choice(cfg, "layout", ["auto", *RETRIEVAL_LAYOUTS.names()])
    for name, registry in (("loss", LOSSES), ("miner", MINERS), ("distance", DISTANCES), ("sampler", BATCH_SAMPLERS),
                           ("pooling", POOLINGS)):
        check_choice(cfg, name, registry.names())
    check_at_least(cfg, 1, "epochs", "image_size", "batch_size", "classes_per_batch", "samples_per_class",
                   "head_passes", "threads", "iterations_per_representative", "classes_per_anchor")
    check_at_least(cfg, 0, "minutes", "finetune_minutes", "workers", "frozen_stages", "finetune_epochs")
    check_seed(cfg)
    # a negative rate or weight would train away from the objective (AdamW checks only its default rate)
    check_at_least(cfg, 0, "lr", "backbone_lr", "loss_lr", "weight_decay", "zero_mean_weight", "proximity_weight")

    def changed(*names: str) -> str:
        """``--name value`` of each of ``names`` set to another value than its default, comma-separated."""
        return ", ".join(f"--{n.replace('_', '-')} {getattr(cfg, n)}" for n in cfg.changed(*names))

    if cfg.mode == "end_to_end":
        stage_options = [f"--{name.replace('_', '-')} {getattr(cfg, name)}"
                         for name in ("finetune_epochs", "finetune_minutes") if getattr(cfg, name)]
        if stage_options:
            raise ConfigError(f"{', '.join(stage_options)}: the fine-tuning stage follows the head stage of mode "
                              "staged; mode end_to_end trains everything for --epochs (--minutes)")
        if head_options := changed("head_passes", "feature_views"):
            raise ConfigError(f"{head_options}: options of the head stage on cached features of mode staged, which "
                              "mode end_to_end has not")
    elif cfg.finetune_minutes and not cfg.finetune_epochs:
        raise ConfigError(f"--finetune-minutes {cfg.finetune_minutes}: the fine-tuning stage trains for "
                          "--finetune-epochs, 0 (none) here: give them too (the stage ends at whichever comes first)")
    check_fraction(cfg, "val_fraction")
    if not resume:  # earlier versions saved both, the share ignored
        check_one_validation_choice(cfg, "val_classes")
    with usage_errors():
        lr_factor(1.0, 0.0, cfg.lr_schedule)  # an unknown schedule fails now, not after the features are computed
    if not 1 <= cfg.feature_views <= 4:
        raise ConfigError(f"feature_views must be in [1, 4], got {cfg.feature_views}")
    if cfg.embedding_dim < 0:
        raise ConfigError(f"embedding_dim must be >= 0 (0 = the backbone's feature size), got {cfg.embedding_dim}")
    if cfg.whiten_shrinkage <= 0:
        raise ConfigError(f"whiten_shrinkage must be > 0, got {cfg.whiten_shrinkage}")
    if cfg.head_init != "class_whiten" and (shrinkage := changed("whiten_shrinkage")):
        raise ConfigError(f"{shrinkage}: the shrinkage of --head-init class_whiten, not of {cfg.head_init}: choose "
                          "that head start, or leave it unset")
    check_weights_file(cfg.weights)


def build_model(cfg: RetrievalTrainConfig) -> RetrievalModel:
    """The model of ``cfg``, checked to embed ``image_size`` images. A backbone, frozen stages or image size it
    cannot take raise ``ConfigError`` (a usage error); a weights file that cannot be read does not."""
    weights = None if cfg.weights in NO_WEIGHTS else cfg.weights
    try:
        net = create_retrieval_model(cfg.backbone, weights=weights, pooling=cfg.pooling,
                                     embedding_dim=cfg.embedding_dim, freeze_bn=cfg.freeze_bn,
                                     pool_stages=cfg.pool_stages, flip_average=cfg.flip_average,
                                     mean=cfg.input_mean or None, std=cfg.input_std or None)
    except KeyError as e:  # an unknown backbone name (a weights file that does not fit is a ValueError)
        raise ConfigError(e.args[0]) from None
    with usage_errors():
        net.freeze_stages(cfg.frozen_stages)
        check_image_size(net, cfg.image_size)  # before any image is decoded
    return net


def build_optimizer(learner: RetrievalLearner, cfg: RetrievalTrainConfig, feature_params: list[nn.Parameter],
                    train_features: bool) -> torch.optim.Optimizer:
    """AdamW over the head (``lr``), the loss's own parameters (``loss_lr``) and, when ``train_features``, the
    backbone and pooling (``backbone_lr``); log.csv's columns ``lr``, ``lr_loss`` and ``lr_backbone``."""
    groups = [{"params": learner.net.head_parameters(), "lr": cfg.lr}]
    loss_params = [p for p in learner.loss.parameters() if p.requires_grad]
    if loss_params:
        groups.append({"params": loss_params, "lr": cfg.loss_lr, "name": "loss"})
    if train_features:
        groups.append({"params": feature_params, "lr": cfg.backbone_lr, "name": "backbone"})
    return adamw(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_loader(dataset: Dataset, learner: RetrievalLearner, sampler: Sampler, labels: torch.Tensor,
                 embed: Callable[[], Embedded], cfg: RetrievalTrainConfig, device: torch.device,
                 passes: int = 1, workers: Optional[int] = None) -> DataLoader:
    """Each epoch's batches: ``passes`` passes of ``sampler``, read by ``workers`` processes (default
    ``cfg.workers``; none when a hook of the learner steers the sampler step by step: each batch is then drawn after
    the step before it, as workers reading ahead would not); before each epoch the learner's hooks refresh from
    ``embed()`` (the training set's current embeddings, computed in eval mode and only if a hook asks)."""
    workers = cfg.workers if workers is None else workers
    if any(hook.steers_batches for hook in learner.hooks):
        workers = 0

    def on_epoch() -> None:
        memo: list[Embedded] = []

        def embed_once() -> Embedded:
            if not memo:
                was_training = learner.training
                learner.eval()
                with torch.no_grad():
                    memo.append(embed())
                learner.train(was_training)
            return memo[0]

        learner.before_epoch(embed_once, labels)

    batches = EpochBatches(sampler, passes, on_epoch if len(learner.hooks) else None)
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0)


def _engine(learner: RetrievalLearner, optimizer: torch.optim.Optimizer, output: Path, epochs: int,
            minutes: Optional[float], cfg: RetrievalTrainConfig, dist: DistInfo, data: TrainingData,
            unreadable: Optional[UnreadableLog] = None) -> Engine:
    """The engine of one stage; its model files record the image size and ``data``'s training and validation
    classes."""
    return Engine(learner, optimizer, output, dist=dist, epochs=epochs, amp=cfg.amp, lr_schedule=cfg.lr_schedule,
                  time_budget_s=minutes * 60 if minutes else None, select_metric=SELECT_METRIC, quiet=cfg.quiet,
                  metadata={"image_size": str(cfg.image_size),
                            **seen_metadata(data.train_classes, data.val_classes)},
                  unreadable=unreadable)


def _best_metric(path: Path) -> Optional[float]:
    """The validation MAP@R a model file records, to the 4 decimals ``log.csv`` shows (as each stage chose its best
    epoch on)."""
    value = checkpoint_metadata(path).get(SELECT_METRIC) if path.is_file() else None
    return None if value is None else round(float(value), 4)


def same_file(a: Path, b: Path) -> bool:
    """Whether the files ``a`` and ``b`` both exist and hold the same bytes."""
    return a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()


def promote_finetuned(output: Path) -> bool:
    """Make ``output/best.safetensors`` the fine-tuned best if its validation MAP@R is higher as the logs show it
    (a tie keeps the earlier stage's, as a tie between epochs does; if neither has one, the later stage wins), with
    the loss's state saved beside it. Returns whether it was replaced."""
    stage1, stage2 = output / "best.safetensors", output / FINETUNE_DIR / "best.safetensors"
    if not stage2.is_file():
        return False
    before, after = _best_metric(stage1), _best_metric(stage2)
    better = after is None or before is None or after > before
    if better and not same_file(stage1, stage2):
        if loss_state_path(stage2).is_file():  # first, as the learner writes them
            write_bytes_atomic(loss_state_path(stage1), loss_state_path(stage2).read_bytes())
        write_bytes_atomic(stage1, stage2.read_bytes())
        return True
    return False


# --- the run ------------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    output: Path
    stages: dict[str, FitResult]
    train_classes: list[str]
    val_classes: list[str]
    skipped: list[tuple[Path, str]]
    problems: list[Problem]
    feature_seconds: float = 0.0
    promoted_finetune: bool = False  # best.safetensors replaced by the fine-tuned best in this call
    finetune_kept: bool = False  # best.safetensors is the fine-tuned best (promoted in this call or an earlier one)
    is_main: bool = True  # False in the other processes of a torchrun run (rank > 0)
    unreadable_classes: list[str] = field(default_factory=list)  # of which no image could be read: left out


def _augmentation(size: int) -> nn.Module:
    return nn.Sequential(K.RandomResizedCrop((size, size), scale=(0.5, 1.0)), K.RandomHorizontalFlip())


def train(cfg: RetrievalTrainConfig, resume: bool = False, dist: Optional[DistInfo] = None) -> TrainResult:
    """Train a retrieval model as configured; files go to ``cfg.output`` (see the module docstring and
    :class:`coseg.engine.Engine`). A run already there is continued (``resume``, with its own options but for
    :data:`RUN_FOLDER`'s resumable ones) or replaced (``cfg.overwrite``), never silently lost."""
    check_config(cfg, resume)
    with training_lock(cfg.output, dist):  # before the run folder is read: another training may be writing it
        RUN_FOLDER.check(cfg, resume, world_size(dist))
        if resume:
            check_head_stage_length(cfg)
        with distributed_run(cfg.device, dist) as info:
            return _train(cfg, resume, info)


def check_head_stage_length(cfg: RetrievalTrainConfig) -> None:
    """Refuse to resume a staged run whose fine-tuning stage has started (from the head stage's best model) with a
    head stage of another length (``epochs``, ``minutes``): the head stage would not go on, yet config.yaml would
    record the new length."""
    output = Path(cfg.output)
    if cfg.mode != "staged" or not (output / FINETUNE_DIR / "last.pt").is_file():
        return
    saved = load_config(RetrievalTrainConfig, output / "config.yaml")
    changed = [f"--{name} {getattr(saved, name)} → {getattr(cfg, name)}" for name in ("epochs", "minutes")
               if (getattr(saved, name) or None) != (getattr(cfg, name) or None)]  # minutes 0 and unset: no budget
    if changed:
        raise ValueError(f"{printable(output / FINETUNE_DIR)}: the fine-tuning stage has started from the head "
                         f"stage's best model, so the head stage cannot go on ({'; '.join(changed)}): resume with "
                         "the head stage's own length; --finetune-epochs and --finetune-minutes lengthen the "
                         "fine-tuning stage")


def seen_features(net: RetrievalModel, features: torch.Tensor, dataset: RetrievalImageDataset,
                  device: torch.device, cfg: RetrievalTrainConfig, progress: bool) -> torch.Tensor:
    """The features (N, feature_dim) the model embeds the training images from, as evaluation and the fine-tuning
    stage see them, out of the head stage's cached views (V, N, feature_dim): view 0 (as they are), or with
    ``flip_average`` the mean of views 0 and 1 (the mirror), computed when only view 0 is cached."""
    if not net.flip_average:
        return features[0]
    if len(features) >= 2:
        return features[:2].mean(0)
    return inference_features(net, dataset, device, cfg.batch_size, cfg.workers, cfg.cache_dir, progress)


def note_unreadable(result: TrainResult, log: UnreadableLog, files: list[tuple[Path, str]], outcome: str) -> None:
    """Add the ``files`` that could not be read when features were computed to the run's skipped files and to
    ``log`` (warned about once, in the main process: every process computes the same features)."""
    for path, problem in files:
        if path not in log.files:
            result.skipped.append((path, problem))
        log.note(path, problem, outcome, counted=False, warn=result.is_main)


def _start_run(cfg: RetrievalTrainConfig, resume: bool) -> None:
    """Write ``config.yaml`` into ``cfg.output``, having first (a new run: ``overwrite``) removed the replaced run's
    files, its fine-tuning stage's too (none may be resumed or promoted), and its report. Called by the engine of
    the first stage that trains, in the main process, so that an option the data, model, method, head start or
    engine refuse, an interruption while the features are computed, or a resumed run with nothing left to train
    leaves the run's files as they were."""
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    if not resume:
        RUN_FOLDER.clear(output)
    RUN_FOLDER.save_config(cfg, output / "config.yaml")


def _train(cfg: RetrievalTrainConfig, resume: bool, dist: DistInfo) -> TrainResult:
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    output = Path(cfg.output)
    resume = resume and (output / "last.pt").is_file()  # a run killed in its first epoch starts anew
    progress = not cfg.quiet and dist.is_main

    net = build_model(cfg)
    with usage_errors():
        check_head_init(cfg.head_init, net.feature_dim, net.embedding_dim)  # before any image is decoded

    def check_method(records: list[Record], classes: list[str]) -> None:
        supers = [r.super_label for r in records]
        build_components(cfg, torch.tensor([r.label for r in records]), len(classes), dist.rank, dist.world_size,
                         net.embedding_dim, None if None in supers else torch.tensor(supers), classes)

    data = load_training_data(cfg, progress, check=check_method)
    check_same_files(data.skipped, dist)  # else the processes' batches would not pair up
    labels = data.train.labels
    feature_params = net.feature_parameters()
    parts = build_components(cfg, labels, len(data.train_classes), dist.rank, dist.world_size, net.embedding_dim,
                             data.train.super_labels, data.train_classes)
    learner = RetrievalLearner(net, parts, cfg.loss)
    val_labels = data.val.labels if data.val is not None else None
    device = dist.device
    unreadable = UnreadableLog()
    result = TrainResult(output, {}, data.train_classes, data.val_classes, list(data.skipped), data.problems,
                         is_main=dist.is_main, unreadable_classes=data.unreadable_classes)
    start_run = once(lambda: _start_run(cfg, resume))
    finetune_resume = resume and (output / FINETUNE_DIR / "last.pt").is_file()
    head_stage = cfg.mode == "staged" and not finetune_resume
    features = None
    replaced: list[tuple[int, str]] = []  # the training items whose features are another image's
    if head_stage or (cfg.head_init != "random" and not resume):
        start = time.perf_counter()
        views = cfg.feature_views if cfg.mode == "staged" else 1
        features = cached_features(net, data.train, views, device, cfg.batch_size, cfg.workers, cfg.cache_dir,
                                   progress, replaced)
        note_unreadable(result, unreadable, unreadable_files(data.train, replaced),
                        "the features of another image of its class take its place")
        result.feature_seconds = time.perf_counter() - start
        if not resume:
            init_head(net, features.flatten(0, 1), cfg.head_init, labels.repeat(len(features)), cfg.whiten_shrinkage)

    def embed_images() -> Embedded:
        embedded = embed_readable(net, data.train, device, cfg.batch_size, cfg.workers)
        require_every(embedded, len(data.train))
        for path, problem in unreadable_files(data.train, embedded.unreadable):
            unreadable.note(path, problem, "the method's embedding of the whole training set before each epoch "
                            "leaves it out", counted=False, warn=dist.is_main)
        return embedded

    if head_stage:
        assert features is not None
        validation = None
        if data.val is not None:
            found = readable_features(net, data.val, inference_views(net), device, cfg.batch_size, cfg.workers,
                                      cfg.cache_dir, progress)
            note_unreadable(result, unreadable, unreadable_files(data.val, found.unreadable),
                            "it is left out of the head stage's validation score")
            scored = data.val.labels[found.kept]
            if found.unreadable:
                check_validation_classes(scored, data.val_classes,
                                         f" since start-up ({len(found.unreadable)} validation image(s) could no "
                                         f"longer be read for the head stage; first: {found.unreadable[0][1]})")
            validation = Validation(scored, device, features=found.values.mean(0))
        for p in feature_params:
            p.requires_grad_(False)
        learner.head_only = True

        embedded = seen_features(net, features, data.train, device, cfg, progress)

        def embed_features() -> Embedded:
            values = torch.cat([net.embed_features(chunk.to(device)).cpu() for chunk in embedded.split(4096)])
            return Embedded(values, torch.arange(len(values)), replaced)

        # cached features are indexed in memory, so no worker processes: they would only add start-up time, and the
        # views they draw would come from their own generators, which no checkpoint holds (a resumed run would differ)
        loader = train_loader(FeatureDataset(features, labels), learner, parts.sampler, labels, embed_features, cfg,
                              device, cfg.head_passes, workers=0)
        engine = _engine(learner, build_optimizer(learner, cfg, feature_params, False), output, cfg.epochs,
                         cfg.minutes, cfg, dist, data)
        result.stages["head"] = engine.fit(RetrievalTask(learner, validation, dist=dist), loader, resume=resume,
                                           before_write=start_run)
        learner.head_only = False
        for p in feature_params:
            p.requires_grad_(True)
    if cfg.mode == "staged" and cfg.finetune_epochs == 0:
        return result
    image_output, epochs, minutes = output, cfg.epochs, cfg.minutes
    if cfg.mode == "staged":
        image_output, epochs, minutes = output / FINETUNE_DIR, cfg.finetune_epochs, cfg.finetune_minutes
        if not finetune_resume:  # a started one goes on from finetune/last.pt
            learner.load(output / "best.safetensors")
    validation = (Validation(val_labels, device, images=data.val, batch_size=cfg.batch_size, workers=cfg.workers,
                             unreadable=unreadable) if val_labels is not None else None)
    loader = train_loader(data.train, learner, parts.sampler, labels, embed_images, cfg, device)
    engine = _engine(learner, build_optimizer(learner, cfg, feature_params, True), image_output, epochs, minutes,
                     cfg, dist, data, unreadable)
    task = RetrievalTask(learner, validation, _augmentation(cfg.image_size), dist)
    stage = "finetune" if cfg.mode == "staged" else "end_to_end"
    result.stages[stage] = engine.fit(task, loader, resume=resume if cfg.mode == "end_to_end" else finetune_resume,
                                      before_write=start_run)
    result.skipped = skipped_with_later(result.skipped, result.stages[stage])
    if cfg.mode == "staged" and dist.is_main:
        result.promoted_finetune = promote_finetuned(output)
        result.finetune_kept = same_file(output / "best.safetensors", output / FINETUNE_DIR / "best.safetensors")
    return result
