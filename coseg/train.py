"""Co-segmentation training: data → model → objective → the shared engine."""
from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from coseg.atomic import remove_temporaries
from coseg.config import CosegTrainConfig
from coseg.data import (
    LAYOUTS, CosegDataset, DataFileError, GroupPaste, ImageCache, Problem, Scan, TrainAugmentation, find_samples,
    groups_sharing_images, holdout_groups, printable, sharing_pairs, stratified_holdout,
)
from coseg.engine import (ConfigError, DistInfo, Engine, FitResult, NonFiniteLossError, RunFolder, adamw,
                          check_at_least, check_choice, check_fraction, check_one_validation_choice, check_seed,
                          distributed_run, once, training_lock, usage_errors)
from coseg.engine.distributed import barrier, check_same_files, world_size
from coseg.engine.trainer import UnreadableLog
from coseg.inference import predict_dataset
from coseg.models import ARCHITECTURES, CosegNet, Model, create_model, load_ensemble
from coseg.models.cosegnet import check_encoder_name
from coseg.models.checkpoint import seen_metadata, update_metadata
from coseg.models.ensemble import seen_by_members
from coseg.objective import CosegObjective
from coseg.report.build import remove_report
from coseg.scores import score_image, summarize
from coseg.selection import (check_group_choice, choose_groups, default_splits_file, groups_without_masks,
                             nothing_labelled, problems_of, samples_of)
from metric.losses import ISTripletLoss
from metric.registry import MINERS
from metric.samplers import PKBatchSampler


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class CosegTask:
    """One training step (augment → model → objective) and validation J/P on held-out groups."""

    def __init__(self, objective: CosegObjective, augmentation: Optional[TrainAugmentation],
                 val_data: Optional[CosegDataset], device: torch.device, channels_last: bool = True,
                 paste: Optional[GroupPaste] = None, unreadable: Optional[UnreadableLog] = None) -> None:
        self.objective = objective.to(device)
        self.unreadable = unreadable
        self.augmentation = augmentation.to(device) if augmentation is not None else None
        self.paste = paste
        self.val_data = val_data
        self.device = device
        self.channels_last = channels_last

    def train_step(self, model: torch.nn.Module, batch: dict, device: torch.device) -> dict[str, torch.Tensor]:
        images = batch["image"].to(device, non_blocking=True).float().div_(255)
        masks = batch["mask"].to(device, non_blocking=True)
        groups = batch["group"].to(device, non_blocking=True)
        if self.augmentation is not None:
            images, aug_masks = self.augmentation(images, masks.unsqueeze(1).float())
            masks = (aug_masks[:, 0] > 0.5).long()
        if self.paste is not None:
            images, pasted_masks = self.paste(images, masks.unsqueeze(1).float(), groups)
            masks = (pasted_masks[:, 0] > 0.5).long()
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        out = model(images, groups)
        return self.objective(out.mask_logits, out.embeddings, masks.long(), groups)

    def batch_size(self, batch: dict) -> int:
        return int(batch["image"].shape[0])

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        """P and J (percent) on the validation groups: :func:`validation_scores`."""
        return {} if self.val_data is None else validation_scores(model, self.val_data, self.device, self.unreadable)


def validation_scores(model: Model, val_data: CosegDataset, device: torch.device,
                      unreadable: Optional[UnreadableLog] = None) -> dict[str, float]:
    """P and J (percent) of ``model``'s group predictions on ``val_data`` at the training resolution (a fast proxy
    of the original-resolution evaluation, used for model selection). An image the model gives non-finite
    probabilities for (reported by ``predict_dataset`` instead of predicted) scores as an empty mask: left out, it
    would raise the score of a broken model. An image (or mask) that can no longer be read is left out of the
    score, noted in ``unreadable`` when given."""
    scores = []
    groups = val_data.group_ids.tolist()
    for index, prob in predict_dataset(model, val_data, device, groups=groups):  # type: ignore[arg-type]
        sample = val_data.samples[index]
        try:
            gt = val_data.cache[sample].mask.astype(bool)
        except DataFileError as e:  # read for its prediction too, which ``prob`` then reports
            if unreadable is not None:
                unreadable.note(e.path, e.problem, "it is left out of the validation score")
            continue
        mask = np.zeros_like(gt) if isinstance(prob, str) else prob.numpy() >= 0.5
        scores.append(score_image(mask, gt, sample.group, sample.image.name))
    summary = summarize(scores)
    return {"P": summary["P"], "J": summary["J"]}


@dataclass
class TrainResult:
    output: Path
    fit: FitResult
    train_groups: list[str]
    val_groups: list[str]
    skipped: list[tuple[Path, str]]
    problems: list[Problem]  # files the scan left out (:func:`problems_of` the run's groups): images without masks, ...
    members: list[FitResult] = field(default_factory=list)  # each member's run, when an ensemble was trained
    is_main: bool = True  # False in the other processes of a torchrun run (rank > 0)


def split_train_val(cfg: CosegTrainConfig, scan) -> tuple[list[str], list[str]]:
    """Training and validation groups: validation is carved from the training groups (never the test split).
    Explicit ``val_groups`` are taken out of the training split (or of all groups); listed both there and in
    explicit ``train_groups`` they are an error, and so is a chosen group without any mask. Where the groups
    belong to subsets (SBCoseg) each subset gives its share, unless that holds none out. No group left to train on
    (no mask in the data set, an empty split, every group a validation group) is an error saying which."""
    splits = default_splits_file(Path(cfg.data), cfg.splits)
    groups = _chosen(scan, cfg.train_groups, "--train-groups", splits, cfg.train_split)
    if not scan.labelled:
        raise ValueError(nothing_labelled(cfg.data, cfg.layout, scan, problems_of(scan, groups), "train on"))
    val = _chosen(scan, cfg.val_groups, "--val-groups") if cfg.val_groups else []
    labelled = {s.group for s in scan.labelled}
    unlabelled = [g for g in dict.fromkeys(groups + val) if g not in labelled]
    if unlabelled:
        raise ValueError(f"group(s) without any mask, so nothing to train or validate on: "
                         f"{', '.join(map(printable, unlabelled))}")
    if val:
        overlap = sorted(set(val) & set(groups))
        if overlap and cfg.train_groups:
            raise ValueError(f"groups both in training and validation: {', '.join(map(printable, overlap))}")
        kept = [g for g in groups if g not in overlap]
        if not kept:
            raise ValueError(f"all {len(groups)} training group(s) are validation groups, so none is left to train "
                             "on: give fewer --val-groups")
        together = groups_sharing_images(s for s in scan.labelled if s.group in set(kept + val))
        leaks = [f"'{printable(v)}' with '{printable(k)}'" for v, k in sharing_pairs(val, kept, together)]
        if leaks:
            raise ValueError(f"validation groups share images with training groups: {', '.join(leaks)}; validate on "
                             "other groups or leave those out of training (--train-groups)")
        return kept, val
    if cfg.val_fraction <= 0 or len(groups) < 2:
        return groups, []
    together = groups_sharing_images(s for s in scan.labelled if s.group in set(groups))
    subsets = {g: s for g, s in scan.group_subsets().items() if g in set(groups)}
    if any(subsets.values()):
        kept, held = stratified_holdout(subsets, cfg.val_fraction, seed=cfg.seed, together=together)
        if held:
            return kept, held
    try:
        return holdout_groups(groups, fraction=cfg.val_fraction, seed=cfg.seed, together=together)
    except ValueError as e:
        raise ValueError(f"val_fraction {cfg.val_fraction}: {e}") from None


def _chosen(scan: Scan, explicit: list[str], option: str, splits: Optional[Path] = None,
            split: Optional[str] = None) -> list[str]:
    """:func:`choose_groups`; a name of ``explicit`` it cannot resolve is told naming ``option`` (a split's names
    are told naming the splits file)."""
    try:
        return choose_groups(scan, splits, split, explicit)
    except ValueError as e:
        if not explicit:
            raise
        raise ValueError(f"{option}: {e}") from None


RUN_FOLDER = RunFolder(subruns="member*",
                       paths=frozenset({"data", "masks", "splits", "weights", "output", "cache_dir"}),
                       remove_report=remove_report)
"""An ensemble's members train in ``OUTPUT/member<i>/``."""


NO_WEIGHTS = (None, "", "none", "None")
"""The ``weights`` values that start the encoder from random weights."""


def check_weights_file(weights: Optional[str]) -> None:
    """Raise ``ConfigError`` (a usage error naming ``weights``) unless ``weights`` is ``imagenet``, one of
    :data:`NO_WEIGHTS` or a file that is there."""
    if weights not in (*NO_WEIGHTS, "imagenet") and not Path(weights).is_file():
        raise ConfigError(f"weights: {printable(weights)} is not a file (give imagenet, none or a local weights file)")


def build_model(cfg: CosegTrainConfig) -> CosegNet:
    weights = None if cfg.weights in NO_WEIGHTS else cfg.weights
    prior = cfg.semantic_prior and cfg.group_levels > 0
    return create_model(cfg.arch, encoder=cfg.encoder, weights=weights, embedding_dim=cfg.embedding_dim,
                        group_levels=cfg.group_levels, semantic_prior=prior,
                        frozen_prior=prior and cfg.frozen_prior, mean=cfg.input_mean or None,
                        std=cfg.input_std or None)


def build_objective(cfg: CosegTrainConfig) -> CosegObjective:
    # built with the triplet loss off too, so that its options are checked before config.yaml records them
    # semi-hard and batch-all select triplets by the loss margin; batch-hard needs none
    miner_args = {} if cfg.triplet_miner == "batch_hard" else {"margin": cfg.triplet_margin}
    triplet = ISTripletLoss(margin=cfg.triplet_margin, k_per_class=cfg.triplet_pixels,
                            strategy=cfg.triplet_strategy,  # type: ignore[arg-type]
                            miner=MINERS.create(cfg.triplet_miner, **miner_args))
    seg = {"dice": cfg.dice_weight, "ce": cfg.ce_weight, "focal": cfg.focal_weight, "jaccard": cfg.jaccard_weight}
    return CosegObjective(seg, cfg.triplet_weight, triplet)  # which leaves it out with a weight of 0


def build_optimizer(model: CosegNet, cfg: CosegTrainConfig) -> torch.optim.Optimizer:
    """AdamW (fused where torch can: :func:`coseg.engine.adamw`) over the trainable parameters: the encoder at
    ``lr × encoder_lr_scale``, the rest at ``lr``. An encoder_lr_scale of 0 freezes the encoder
    (:meth:`CosegNet.freeze_encoder`); ``encoder_statistics="frozen"`` keeps only its BatchNorm statistics
    (:meth:`CosegNet.freeze_encoder_statistics`)."""
    if cfg.encoder_lr_scale < 0:
        raise ValueError(f"encoder_lr_scale must be >= 0, got {cfg.encoder_lr_scale}")
    if cfg.encoder_statistics not in ("train", "frozen"):
        raise ValueError(f"encoder_statistics must be 'train' or 'frozen', got {cfg.encoder_statistics!r}")
    if cfg.encoder_lr_scale == 0:
        model.freeze_encoder()
    elif cfg.encoder_statistics == "frozen":
        model.freeze_encoder_statistics()
    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    rest = [p for p in model.parameters() if id(p) not in encoder_ids and p.requires_grad]
    groups = [{"params": rest, "lr": cfg.lr}]  # log.csv's lr column; the encoder's is lr_encoder
    if encoder:
        groups.insert(0, {"params": encoder, "lr": cfg.lr * cfg.encoder_lr_scale, "name": "encoder"})
    return adamw(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def check_groups_per_batch(cfg: CosegTrainConfig, train_groups: list[str], val_groups: list[str]) -> None:
    """Refuse fewer training groups than a batch takes (``groups_per_batch``), saying what would leave more: fewer
    explicit ``val_groups``, or a lower ``val_fraction`` (any fraction above 0 holds out at least one group)."""
    if len(train_groups) >= cfg.groups_per_batch:
        return
    held = f", {len(val_groups)} held out for validation" if val_groups else ""
    fewer = ("" if not val_groups else " or give fewer --val-groups" if cfg.val_groups
             else " or --val-fraction (0 holds out none; any other fraction at least one group)")
    raise ValueError(f"{len(train_groups)} training group(s){held}, but groups_per_batch = {cfg.groups_per_batch}: "
                     f"lower --groups-per-batch{fewer}")


LOSS_WEIGHTS = ("dice_weight", "ce_weight", "focal_weight", "jaccard_weight", "triplet_weight")


def check_config(cfg: CosegTrainConfig, resume: bool = False) -> None:
    """Refuse (``ConfigError`` naming the option) the values :func:`train` cannot take, before it reads anything:
    sizes, counts, the time budget, the validation share, or one set beside the validation groups it would not choose
    (but the run's own on ``resume``: earlier versions saved both, ignoring the share), the optimiser's rates, the
    loss weights and margin, the EMA decay, augmentation strengths and probabilities, the choice of training groups
    and files that are not there."""
    check_at_least(cfg, 32, "image_size")
    if cfg.image_size % 32:
        raise ConfigError(f"image_size must be a multiple of 32, got {cfg.image_size}")
    check_at_least(cfg, 1, "members", "epochs", "groups_per_batch", "images_per_group", "triplet_pixels",
                   "embedding_dim")
    check_at_least(cfg, 0, "workers", "lr", "weight_decay", "encoder_lr_scale", "group_levels", *LOSS_WEIGHTS)
    if not any(getattr(cfg, name) for name in LOSS_WEIGHTS):
        raise ConfigError(f"the loss weights ({', '.join(LOSS_WEIGHTS)}) are all 0: nothing would be trained")
    if not cfg.triplet_margin > 0:
        raise ConfigError(f"triplet_margin must be > 0, got {cfg.triplet_margin}")
    if cfg.minutes is not None and not cfg.minutes >= 0:  # NaN too: no budget would ever run out
        raise ConfigError(f"minutes must be >= 0 (0 or unset: no time budget), got {cfg.minutes}")
    check_fraction(cfg, "val_fraction")
    if not resume:  # earlier versions saved both, the share ignored
        check_one_validation_choice(cfg, "val_groups")
    check_fraction(cfg, "ema_decay")  # 0: no EMA
    check_seed(cfg, cfg.members)
    if not 0 < cfg.crop_scale <= 1:
        raise ConfigError(f"crop_scale must be in (0, 1] (the smallest share of the image a crop keeps), got "
                          f"{cfg.crop_scale}")
    for name in ("colour_jitter", "paste_distractor_p", "paste_background_p", "paste_common_background_p"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise ConfigError(f"{name} must be in [0, 1], got {getattr(cfg, name)}")
    check_choice(cfg, "layout", ["auto", *LAYOUTS.names()])
    check_choice(cfg, "triplet_miner", MINERS.names())
    check_choice(cfg, "triplet_strategy", ["random", "hard"])
    check_choice(cfg, "encoder_statistics", ["train", "frozen"])
    check_choice(cfg, "arch", ARCHITECTURES.names())
    check_group_choice(cfg.train_groups, cfg.train_split, cfg.splits, "training groups",
                       ("--train-groups", "--train-split", "--splits"))
    if cfg.splits is not None and not Path(cfg.splits).is_file():
        raise ConfigError(f"splits: {printable(cfg.splits)} is not a file")
    if cfg.masks is not None and not (cfg.masks.strip() and Path(cfg.masks).is_dir()):  # "": not the current folder
        raise ConfigError(f"masks: {printable(cfg.masks) or repr('')} is not a folder")
    check_weights_file(cfg.weights)
    with usage_errors():
        check_encoder_name(cfg.encoder)
        build_augmentation(cfg)  # its crops must keep 2 pixels a side at this image size


def build_augmentation(cfg: CosegTrainConfig) -> Optional[TrainAugmentation]:
    """The training augmentation ``cfg`` asks for (``augment``, ``crop_scale``, ``colour_jitter``); None when off."""
    if not cfg.augment:
        return None
    s = cfg.colour_jitter
    return TrainAugmentation(cfg.image_size, crop_scale=(cfg.crop_scale, 1.0), brightness=s, contrast=s,
                             saturation=s, hue=s / 6)


def train(cfg: CosegTrainConfig, resume: bool = False, dist: Optional[DistInfo] = None) -> TrainResult:
    """Train a co-segmentation model as configured; files go to ``cfg.output`` (see :class:`Engine`). With
    ``cfg.members`` > 1, an ensemble: see :func:`member_configs` and :func:`_train_members`."""
    check_config(cfg, resume)
    with training_lock(cfg.output, dist):  # before the run folder is read: another training may be writing it
        RUN_FOLDER.check(cfg, resume, world_size(dist))
        with distributed_run(cfg.device, dist) as info:
            if cfg.groups_per_batch % info.world_size:
                raise ValueError(f"groups_per_batch ({cfg.groups_per_batch}) must be a multiple of the number of "
                                 f"processes ({info.world_size}): each process takes whole groups of every batch")
            if cfg.members > 1:
                return _train_members(cfg, resume, info)
            return _train(cfg, resume, info, before_write=lambda: _replace_run(cfg, resume))


def _replace_run(cfg: CosegTrainConfig, resume: bool) -> None:
    """With ``overwrite``, remove the replaced run's files (none may be resumed or reported) and its report; called
    once the new run's data, model and objective are built, so that an option they refuse leaves the old run
    whole."""
    if not resume:
        RUN_FOLDER.clear(Path(cfg.output))


def member_configs(cfg: CosegTrainConfig, scan: Scan) -> list[CosegTrainConfig]:
    """The runs of an ensemble: member i trains in ``<output>/member<i>`` with seed ``cfg.seed + i`` for
    ``cfg.minutes / cfg.members`` minutes (up to ``cfg.epochs`` epochs each) or, without a time budget,
    ``cfg.epochs / cfg.members`` epochs (rounded half up, at least 1), on the same training and validation groups
    (carved once, with ``cfg.seed``; too few of them for a batch are refused here, before the run folder is written)."""
    train_groups, val_groups = split_train_val(cfg, scan)
    check_groups_per_batch(cfg, train_groups, val_groups)
    minutes = cfg.minutes / cfg.members if cfg.minutes else cfg.minutes
    epochs = cfg.epochs if cfg.minutes else max(1, math.floor(cfg.epochs / cfg.members + 0.5))  # half up
    return [replace(cfg, members=1, seed=cfg.seed + i, output=str(Path(cfg.output) / f"member{i}"), minutes=minutes,
                    epochs=epochs,
                    train_groups=list(train_groups), val_groups=list(val_groups),
                    # the default share beside the groups: another one would be refused (check_config)
                    val_fraction=CosegTrainConfig.val_fraction if val_groups else 0.0)
            for i in range(cfg.members)]


def _train_members(cfg: CosegTrainConfig, resume: bool, dist: DistInfo) -> TrainResult:
    """Train the members one after another, then write ``best.safetensors`` (the ensemble of their best models)
    and ``last.safetensors`` (of their last ones), the ensemble's validation P/J in the first's metadata. A resume
    that trains a member on first marks the ensemble's ``last.safetensors`` unfinished (:func:`_mark_unfinished`)."""
    output = Path(cfg.output)
    scan = find_samples(cfg.data, cfg.layout, cfg.masks)
    configs = member_configs(cfg, scan)

    @once
    def start() -> None:  # before the first member that trains writes: its data, model and objective are built
        _replace_run(cfg, resume)
        output.mkdir(parents=True, exist_ok=True)
        RUN_FOLDER.save_config(cfg, output / "config.yaml")
        if resume:
            _mark_unfinished(output / "last.safetensors")

    cache = ImageCache(cfg.image_size, cache_dir=cfg.cache_dir, progress=not cfg.quiet and dist.is_main)
    runs = [_train_member(i, c, resume, dist, scan, cache, start) for i, c in enumerate(configs)]
    val_groups = runs[0].val_groups
    best_metric = None
    if dist.is_main:
        remove_temporaries(output)  # left by a killed write of the ensemble's own model files
        lasts = [Path(c.output) / "last.safetensors" for c in configs]
        metadata = {"image_size": str(cfg.image_size), "members": str(cfg.members), **seen_by_members(lasts)}
        last, _ = load_ensemble(lasts)
        finished = "time" if any(r.fit.stopped_by_time for r in runs) else "epochs"
        last.save(output / "last.safetensors", {**metadata, "finished": finished})
        if val_groups:
            best, _ = load_ensemble([Path(c.output) / "best.safetensors" for c in configs], dist.device)
            val_data = CosegDataset(samples_of(scan, val_groups), cfg.image_size, cache)
            scores = validation_scores(best.to(memory_format=torch.channels_last).eval(), val_data, dist.device)
            best.save(output / "best.safetensors", {**metadata, **{f"val_{k}": f"{v:.6g}" for k, v in scores.items()}})
            best_metric = None if math.isnan(scores["J"]) else scores["J"]  # every validation mask empty: no J
        else:  # no validation: every member's best is its last
            last.save(output / "best.safetensors", metadata)
    barrier(dist)
    fits = [r.fit for r in runs]
    timed = sum(f.train_seconds for f in fits)
    images = sum(f.train_seconds * f.images_per_s for f in fits)  # this session's, as a single run counts
    fit = FitResult(epochs_run=sum(f.epochs_run for f in fits), best_epoch=0, best_metric=best_metric,
                    stopped_by_time=any(f.stopped_by_time for f in fits), seconds=sum(f.seconds for f in fits),
                    images_per_s=images / timed if timed else 0.0, train_seconds=timed)
    return TrainResult(output, fit, runs[0].train_groups, val_groups, skipped_with_later(cache.skipped, *fits),
                       [*groups_without_masks(scan, cfg.train_groups, cfg.train_split), *runs[0].problems],
                       members=fits, is_main=dist.is_main)


def _train_member(index: int, cfg: CosegTrainConfig, resume: bool, dist: DistInfo, scan: Scan, cache: ImageCache,
                  before_write: Callable[[], None]) -> TrainResult:
    """Member ``index`` of an ensemble (``cfg``: its own config); a non-finite loss in its first epoch after member 0
    is told as the run folder takes it: holding the earlier members, it refuses a new training but resumes."""
    try:
        return _train(cfg, resume, dist, scan, cache, before_write=before_write)
    except NonFiniteLossError as e:
        if index == 0 or not e.first_epoch:
            raise
        kept = "member 0 is kept" if index == 1 else f"members 0 to {index - 1} are kept"
        raise NonFiniteLossError(
            f"{e.reason}; ensemble member {index} ({cfg.output}) stopped before its first checkpoint; {kept}: check "
            f"the data, then --resume (which trains member {index} anew, with the run's learning rate), or train anew "
            "with a lower one (--overwrite)", e.reason, first_epoch=True) from None


def _mark_unfinished(path: Path) -> None:
    """Set ``finished`` to ``no`` in the metadata of the ensemble's model file ``path`` (when there is one), whose
    members train on: it is written again, finished, when they end (one that cannot be read is left as it is until
    then, with a warning on stderr naming it)."""
    try:
        update_metadata(path, {"finished": "no"})
    except FileNotFoundError:
        pass
    except ValueError as error:
        print(f"warning: {error}; the ensemble's model file is written again when its members end (a run stopped "
              "before then leaves it so: --resume)", file=sys.stderr)


def skipped_with_later(skipped: list[tuple[Path, str]], *fits: FitResult) -> list[tuple[Path, str]]:
    """The files skipped at start-up, then those that could not be read later, during the runs ``fits``."""
    listed = dict(skipped)
    for fit in fits:
        listed.update((f, p) for f, p in fit.unreadable if f not in listed)
    return list(listed.items())


def _train(cfg: CosegTrainConfig, resume: bool, dist: DistInfo, scan: Optional[Scan] = None,
           cache: Optional[ImageCache] = None, before_write: Optional[Callable[[], None]] = None) -> TrainResult:
    """One run; an ensemble's members share the data set's ``scan`` and decoded images (``cache``).
    ``before_write`` runs in the main process once everything the options build is built, before the run's first
    file is written; a resumed run with nothing left to train writes no file (its config.yaml stays as it was)."""
    seed_everything(cfg.seed)
    output = Path(cfg.output)
    resume = resume and (output / "last.pt").is_file()  # a run (or member) killed in its first epoch starts anew
    scan = find_samples(cfg.data, cfg.layout, cfg.masks) if scan is None else scan
    train_groups, val_groups = split_train_val(cfg, scan)
    if cache is None:
        cache = ImageCache(cfg.image_size, cache_dir=cfg.cache_dir, progress=not cfg.quiet and dist.is_main)
    train_data = CosegDataset(samples_of(scan, train_groups), cfg.image_size, cache, substitute=True)
    val_data = CosegDataset(samples_of(scan, val_groups), cfg.image_size, cache) if val_groups else None
    check_same_files(cache.skipped, dist)  # else the processes' batches would not pair up
    check_groups_per_batch(cfg, train_data.groups, val_groups)
    sampler = PKBatchSampler(train_data.group_ids, cfg.groups_per_batch, cfg.images_per_group, rank=dist.rank,
                             world_size=dist.world_size, seed=cfg.seed)
    loader = DataLoader(train_data, batch_sampler=sampler, num_workers=cfg.workers,
                        pin_memory=dist.device.type == "cuda", persistent_workers=cfg.workers > 0)
    model = build_model(cfg)
    optimizer = build_optimizer(model, cfg)
    augmentation = build_augmentation(cfg)
    paste = (GroupPaste(cfg.paste_distractor_p, cfg.paste_background_p,
                        common_background_p=cfg.paste_common_background_p)
             if cfg.paste_distractor_p or cfg.paste_background_p or cfg.paste_common_background_p else None)
    unreadable = UnreadableLog()
    task = CosegTask(build_objective(cfg), augmentation, val_data, dist.device, cfg.channels_last, paste, unreadable)
    engine = Engine(model, optimizer, output, dist=dist, epochs=cfg.epochs, amp=cfg.amp,
                    channels_last=cfg.channels_last,
                    time_budget_s=cfg.minutes * 60 if cfg.minutes else None, select_metric="J",
                    find_unused_parameters=not cfg.triplet_weight, quiet=cfg.quiet, ema_decay=cfg.ema_decay,
                    metadata={"image_size": str(cfg.image_size), **seen_metadata(train_groups, val_groups)},
                    unreadable=unreadable)
    def start() -> None:
        if before_write is not None:
            before_write()
        output.mkdir(parents=True, exist_ok=True)
        RUN_FOLDER.save_config(cfg, output / "config.yaml")

    fit = engine.fit(task, loader, resume=resume, before_write=start)
    return TrainResult(output, fit, train_data.groups, val_data.groups if val_data else [],
                       skipped_with_later(cache.skipped, fit),
                       [*groups_without_masks(scan, cfg.train_groups, cfg.train_split),
                        *problems_of(scan, [*train_groups, *val_groups])],
                       is_main=dist.is_main)
