"""Retrieval methods on Oxford-17 Flowers at the same budget, class-disjoint: train on the 8 ``train`` classes
(validation classes held out of them for model selection), test on the 9 ``test`` classes.

    .venv/bin/python benchmarks/retrieval_flowers.py --data ../shared/data/flowers17 --minutes 10 \\
        --out bench_out/retrieval_flowers.json [--methods triplet_semi_hard,soft_triple] [--set lr=1e-4]

One row per method, each trained by the toolkit's retrieval trainer (``apps.retrieval.train``) with the same
config apart from the method's own options (``METHODS``) and the same time budget ``--minutes``; the PML rows plug
pytorch-metric-learning's losses into the same trainer through the loss registry (``PML_LOSSES``). ``frozen`` is the
ImageNet backbone's L2-normalised pooled features without training. Every row is scored by
``apps.retrieval.evaluate`` on the test classes. Columns:
- R@1, R@2, R@4, R@8, MAP@R, NMI (percent);
- s/epoch: training seconds per pass over the training set (head stage: on cached features);
  with ``--set finetune_epochs=N`` the JSON also holds the fine-tuning stage's seconds per epoch, epochs, best
  validation MAP@R and which stage's model was kept (``kept_stage``, the better one on validation);
- skipped: how many image files the row could not read, at start-up or once decoded (training, validation or test
  images; the JSON lists them with why, and the run prints them): each is left out (a training image lost during
  the run: another image of its class takes its place in the batches), never a reason to stop;
- loss s/epoch: miner + loss + hooks' terms, forward and backward, per pass (median of 20 timed steps × steps per
  pass, one thread, on random unit embeddings of the method's batches; the network's share is the same for every
  method); ``--loss-times`` measures this column alone for every method side by side: ``--rounds`` rounds (default
  7) that each time every method's 20 steps, in an order that alternates (:func:`timing.rounds_in_turn`), after a
  warm-up step of each; a row's loss s/epoch is its median over the rounds, ``vs_upper_bound`` the median of each
  round's ratio to the upper bound's (``vs_upper_bound_ci95``, ``vs_upper_bound_pairs``: :func:`timing.paired_ratios`).
Backbone features are computed once and shared by all rows through ``--work``/cache (their seconds are reported
separately as ``feature_seconds``, not in any row's budget).
"""
from __future__ import annotations

import argparse
import csv
import errno
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from apps.retrieval.components import build_components
from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.datasets import load_retrieval_split
from apps.retrieval.evaluate import check_scorable, evaluate_checkpoint, load_for_retrieval
from apps.retrieval.export import export_folder, scan_images
from apps.retrieval.features import inference_views, readable_features, unreadable_files
from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.inference import Embedded
from apps.retrieval.learner import RetrievalLearner
from apps.retrieval.model import create_retrieval_model, load_retrieval_model
from apps.retrieval.train import (FINETUNE_DIR, build_model, check_config, check_validation_classes,
                                  load_training_data, percent_metrics, train, training_records)
from coseg.data import ImageCache, load_split, printable
from coseg.engine import config_from_dict, config_to_dict, read_config_file, resolve_device
from metric.registry import LOSSES
from metric.threads import keeping_callers_count, use_one_torch_thread
from checks import EXPECTED, check_writable, one_line, overrides, write_json
from timing import paired_ratios, paired_rounds, rounds_in_turn

# --- pytorch-metric-learning's losses, plugged into the trainer by name -------------------------------------------


class PMLTripletSemiHard(nn.Module):
    """PML ``TripletMarginLoss`` on the triplets of PML's ``TripletMarginMiner(type_of_triplets="semihard")``."""

    def __init__(self, margin: float = 0.1) -> None:
        super().__init__()
        from pytorch_metric_learning import losses, miners

        self.loss = losses.TripletMarginLoss(margin=margin)
        self.miner = miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(embeddings, labels, self.miner(embeddings, labels))


class PMLSoftTriple(nn.Module):
    """PML ``SoftTripleLoss`` (its centres train at the trainer's ``loss_lr``, like ours)."""

    def __init__(self, num_classes: int, embedding_size: int) -> None:
        super().__init__()
        from pytorch_metric_learning import losses

        self.loss = losses.SoftTripleLoss(num_classes, embedding_size)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(embeddings, labels)


PML_LOSSES = {"pml_triplet_margin": PMLTripletSemiHard, "pml_soft_triple": PMLSoftTriple}

# --- the rows -----------------------------------------------------------------------------------------------------
FROZEN = "frozen"
METHODS: dict[str, dict[str, Any]] = {
    FROZEN: {},
    "triplet_batch_hard": {"loss": "triplet_margin", "miner": "batch_hard"},
    "triplet_semi_hard": {"loss": "triplet_margin", "miner": "semi_hard"},
    "dsml_snr_triplet": {"loss": "triplet_margin", "miner": "semi_hard", "distance": "snr", "zero_mean_weight": 0.01},
    "triplet_upper_bound": {"loss": "triplet_upper_bound"},
    "soft_triple": {"loss": "soft_triple"},
    "global_smart_mining": {"loss": "global", "sampler": "smart_mining"},
    "class_representative": {"loss": "triplet_margin", "miner": "semi_hard", "sampler": "class_representative"},
    "hierarchical_triplet": {"loss": "hierarchical_triplet", "sampler": "hierarchical"},
    "pml_triplet_semi_hard": {"loss": "pml_triplet_margin"},
    "pml_soft_triple": {"loss": "pml_soft_triple"},
}
# Shared by every row unless --config/--set say otherwise, chosen by class-disjoint cross-validation inside the 8
# training classes and --validation runs (never the test classes): GeM pooled stages 3 + 4, mirror-averaged, at
# 288 px (the frozen row uses the same features); a head on the full features started at the within-class
# whitening of the training classes (class_whiten); the best checkpoint on the validation classes is kept; 4 classes
# × 8 images (batch 32) from the 6 classes left after holding 2 out for validation; 20 epochs of 2 passes at head lr
# 1e-4 (mean validation MAP@R of batch-hard, upper bound, class-representative and SoftTriple: 85.4 at 6 epochs,
# 86.1 at 20, 85.7 at 50); one thread (the head stage's steps are tiny).
BASE = {"pooling": "gem", "pool_stages": [3, 4], "flip_average": True, "image_size": 288, "embedding_dim": 0,
        "head_init": "class_whiten", "classes_per_batch": 4, "samples_per_class": 8,
        "head_passes": 2, "epochs": 20, "lr": 1e-4, "threads": 1, "quiet": True}
COLUMNS = ("R@1", "R@2", "R@4", "R@8", "MAP@R", "NMI")


def register_pml_losses() -> None:
    for name, cls in PML_LOSSES.items():
        if name not in LOSSES:
            LOSSES.register(name)(cls)


def seconds_per_pass(run: Path, passes: int) -> float:
    """Median training seconds of the run's epochs (log.csv), divided by the passes per epoch."""
    with open(run / "log.csv", newline="") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    return statistics.median(seconds) / passes


def loss_pass(cfg: RetrievalTrainConfig, labels: torch.Tensor, num_classes: int, dim: int,
              steps: int = 20) -> Callable[[], float]:
    """A measurement of the miner + loss + hooks' terms, forward and backward, per pass over ``labels`` of ``dim``-d
    embeddings (see the module docstring): each call returns the median seconds of ``steps`` steps × steps per pass.
    One untimed step warms it up first. Call it with torch on one thread (:func:`loss_seconds_per_pass`)."""
    torch.manual_seed(0)
    parts = build_components(cfg, labels, num_classes, embedding_dim=dim)
    tiny = create_retrieval_model("test_efficientnet", weights=None, embedding_dim=dim)
    learner = RetrievalLearner(tiny, parts, cfg.loss)
    dataset_embeddings = F.normalize(torch.randn(len(labels), dim))
    learner.before_epoch(lambda: Embedded(dataset_embeddings, torch.arange(len(labels)), []), labels)
    parts.sampler.set_epoch(1)
    batches = list(parts.sampler)

    def step(batch: list[int]) -> float:
        embeddings = F.normalize(torch.randn(len(batch), dim)).requires_grad_()
        start = time.perf_counter()
        learner.objective(embeddings, labels[batch])["loss"].backward()
        return time.perf_counter() - start

    def seconds() -> float:
        return statistics.median(step(batches[i % len(batches)]) for i in range(steps)) * len(batches)

    step(batches[0])
    return seconds


def loss_seconds_per_pass(cfg: RetrievalTrainConfig, labels: torch.Tensor, num_classes: int, dim: int) -> float:
    """One measurement of :func:`loss_pass` on one thread."""
    with keeping_callers_count():
        use_one_torch_thread()  # per-step ops this small only lose from sharing cores with other processes
        return loss_pass(cfg, labels, num_classes, dim)()


def skipped_files(*lists: list[tuple[Path, str]]) -> dict[str, list[str]]:
    """The row's ``skipped`` entry: "file: why" of each file of ``lists`` (file, why), once, in the order met."""
    found: dict[Path, str] = {}
    for files in lists:
        for path, problem in files:
            found.setdefault(Path(path), problem)
    return {"skipped": [f"{printable(path)}: {problem}" for path, problem in found.items()]}


def frozen_row(cfg: RetrievalTrainConfig, data: Path, device: torch.device, validation: bool) -> dict[str, Any]:
    """The ImageNet backbone's features as the model embeds them without a head (L2-normalised; mirror-averaged
    with ``flip_average``), on the test classes — or, with ``validation``, on the run's validation classes; of the
    images that can be read, the others listed in ``skipped``."""
    model = build_model(cfg).eval()
    if validation:
        loaded = load_training_data(cfg)
        dataset, classes = loaded.val, loaded.val_classes
        if dataset is None:
            raise ValueError("--validation needs validation classes (val_fraction > 0)")
    else:
        split = load_retrieval_split(data, "test", "folders")
        dataset, classes = RetrievalImageDataset(split.records, cfg.image_size, ImageCache(
            cfg.image_size, cache_dir=cfg.cache_dir, progress=False)), split.classes
    found = readable_features(model, dataset, inference_views(model), device, cfg.batch_size, cfg.workers,
                              cfg.cache_dir)
    labels = dataset.labels[found.kept]
    if validation:
        check_validation_classes(labels, classes)
    else:
        check_scorable(labels, classes, "test", data)
    metrics = percent_metrics(F.normalize(found.values.mean(0)), labels, with_nmi=not validation,
                              ks=(1,) if validation else (1, 2, 4, 8))
    return {**metrics, "dim": model.feature_dim,
            **skipped_files(dataset.skipped, unreadable_files(dataset, found.unreadable))}


def training_labels(cfg: RetrievalTrainConfig) -> tuple[torch.Tensor, int]:
    """Labels (N,) of the training images of ``cfg`` (validation classes held out) and the number of classes,
    from the split's index alone (no image is decoded)."""
    _, records, train_classes, _ = training_records(cfg)
    return torch.tensor([r.label for r in records]), len(train_classes)


def measure_export_vs_forward(checkpoint: Path, folders: list[Path], batch_size: int = 32,
                              rounds: int = 7) -> dict[str, Any]:
    """``coseg retrieval export`` of the images in ``folders`` (decode, resize, embed — mirror-averaged if the model
    does —, shards, manifest, faiss index) vs the raw model embedding as many ready tensors in the same batches,
    side by side (:func:`timing.paired_rounds`); the output folder's removal is not timed."""
    device = torch.device("cpu")
    model, size = load_for_retrieval(checkpoint, device)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "images"
        inputs.mkdir()
        for folder in folders:
            (inputs / folder.name).symlink_to(folder.resolve(), target_is_directory=True)
        n = len(scan_images(inputs)[0])
        ready = torch.rand(n, 3, size, size)

        @torch.no_grad()
        def forward() -> float:
            start = time.perf_counter()
            for chunk in ready.split(batch_size):
                model(chunk)
            return time.perf_counter() - start

        def export() -> float:
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                export_folder(checkpoint, inputs, Path(out) / "export", batch_size=batch_size)
                return time.perf_counter() - start

        forward()  # warm-up
        forward_s, export_s = paired_rounds(forward, export, rounds)
    return {"images": n, "forward_images_per_s": n / statistics.median(forward_s),
            "export_images_per_s": n / statistics.median(export_s),
            **paired_ratios(forward_s, export_s, "export_vs_forward")}


def checkpoint_dim(path: Path) -> int:
    """Embedding size of the model file ``path``."""
    return int(load_retrieval_model(path).embedding_dim)


def method_row(name: str, cfg: RetrievalTrainConfig, data: Path, device: torch.device,
               validation: bool) -> dict[str, Any]:
    """Train the method; score its best checkpoint on the test classes (with ``validation``: report the
    validation classes' R@1 and MAP@R of that checkpoint instead, and leave the test classes unread). The files
    that training or scoring could not read are listed in ``skipped``."""
    result = train(cfg)
    run = Path(cfg.output)
    stage = next(iter(result.stages.values()))
    passes = cfg.head_passes if cfg.mode == "staged" else 1
    dim = checkpoint_dim(run / "best.safetensors")
    row = {"seconds_per_epoch": seconds_per_pass(run, passes), "epochs": stage.epochs_run * passes,
           "best_epoch": stage.best_epoch * passes, "val_MAP@R": stage.best_metric,
           "feature_seconds": round(result.feature_seconds, 1), "dim": dim,
           "config": {k: v for k, v in config_to_dict(cfg).items() if k in METHODS[name]}}
    # the kept model's stage: the fine-tuning stage when its best beat the head stage's on validation
    kept_log, kept = run / "log.csv", stage
    if "finetune" in result.stages:
        finetune = result.stages["finetune"]
        row.update(finetune_seconds_per_epoch=seconds_per_pass(run / FINETUNE_DIR, 1),
                   finetune_epochs=finetune.epochs_run, finetune_val_MAP_at_R=finetune.best_metric,
                   kept_stage="finetune" if result.finetune_kept else "head")
        if result.finetune_kept:
            kept_log, kept = run / FINETUNE_DIR / "log.csv", finetune
    if validation:
        with open(kept_log, newline="") as f:
            best = next(r for r in csv.DictReader(f) if int(r["epoch"]) == kept.best_epoch)
        return {"R@1": float(best["val_R@1"]), "MAP@R": float(best["val_MAP@R"]), **row,
                **skipped_files(result.skipped)}
    evaluation = evaluate_checkpoint(run / "best.safetensors", data, run / "test", "folders", "test",
                                     image_size=cfg.image_size, batch_size=cfg.batch_size, device=device,
                                     workers=cfg.workers, cache_dir=cfg.cache_dir)
    loss_seconds = loss_seconds_per_pass(cfg, *training_labels(cfg), dim)
    return {**{k: evaluation.summary[k] for k in COLUMNS}, **row, "loss_seconds_per_epoch": loss_seconds,
            **skipped_files(result.skipped, evaluation.skipped)}


def print_table(rows: dict[str, dict[str, Any]], columns: tuple[str, ...]) -> None:
    """The rows' scores, speeds and skipped files' counts, then the skipped files."""
    width = max(len(name) for name in rows) + 2
    timed = all("loss_seconds_per_epoch" in row for name, row in rows.items() if name != FROZEN)
    header = "".join(f"{c:>8}" for c in columns) + f"{'skipped':>9}" + f"{'s/epoch':>10}"
    print(f"{'method':<{width}}{header}" + (f"{'loss s/epoch':>14}" if timed else ""))
    for name, row in rows.items():
        cells = "".join(f"{row[c]:8.1f}" for c in columns) + f"{len(row['skipped']):9d}"
        speed = "" if name == FROZEN else f"{row['seconds_per_epoch']:10.3f}"
        if timed and name != FROZEN:
            speed += f"{row['loss_seconds_per_epoch']:14.4f}"
        print(f"{name:<{width}}{cells}{speed}")
    skipped = dict.fromkeys(file for row in rows.values() for file in row["skipped"])
    if skipped:
        print(f"\nskipped {len(skipped)} unreadable file(s):")
        for file in skipped:
            print(f"  {file}")


def write_loss_times(out: Path, configs: dict[str, RetrievalTrainConfig], rounds: int = 7) -> None:
    """Time every method's loss per epoch side by side (:func:`loss_pass`, each at its model's embedding size, in
    ``rounds`` rounds of :func:`timing.rounds_in_turn`, on one thread), print them with their ratio to the upper
    bound's (the median of each round's, with its spread: ``vs_upper_bound*`` in the JSON), and write them to
    ``out``."""
    dims = {name: build_model(cfg).embedding_dim for name, cfg in configs.items()}
    with keeping_callers_count():
        use_one_torch_thread()  # per-step ops this small only lose from sharing cores with other processes
        measures = [loss_pass(cfg, *training_labels(cfg), dims[name]) for name, cfg in configs.items()]
        seconds = dict(zip(configs, rounds_in_turn(measures, rounds)))
    bound = seconds.get("triplet_upper_bound")
    rows = {name: {"loss_seconds_per_epoch": statistics.median(s), "dim": dims[name],
                   **(paired_ratios(s, bound, "vs_upper_bound") if bound else {})} for name, s in seconds.items()}
    print(f"{'method':<26}{'loss s/epoch':>14}" + (f"{'/ upper bound':>15}" if bound else ""))
    for name, row in rows.items():
        ratio = f"{row['vs_upper_bound']:15.1f}" if bound else ""
        print(f"{name:<26}{row['loss_seconds_per_epoch']:14.4f}{ratio}")
    if bound:
        print(f"\n/ upper bound: the median of {rounds} paired rounds' ratios; their 95 % interval and every round's")
        for name, row in rows.items():
            print(f"{name:<26}95% CI {row['vs_upper_bound_ci95']}  rounds {row['vs_upper_bound_pairs']}")
    write_json(out, {"loss_times_only": True, "rounds": rounds, "rows": rows}, indent=2)
    print(f"wrote {out}")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="flowers17 root (class folders + splits.json)")
    parser.add_argument("--minutes", type=float,
                        help="training time budget of each method (required unless --loss-times/--export-speed)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--methods", help=f"comma-separated rows (default all): {', '.join(METHODS)}")
    parser.add_argument("--work", type=Path, help="runs and the shared feature cache (default: beside --out)")
    parser.add_argument("--config", type=Path, help="YAML config shared by all rows (defaults: the toolkit's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, all rows")
    parser.add_argument("--validation", action="store_true",
                        help="model selection: report R@1 and MAP@R on the validation classes held out of the "
                             "training classes (frozen row included), never reading the test classes")
    parser.add_argument("--loss-times", action="store_true",
                        help="only time each method's miner + loss (+ hooks) per epoch, side by side in paired "
                             "rounds in this process (no training, no evaluation): the loss s/epoch column on its "
                             "own, with each method's ratio to the upper bound")
    parser.add_argument("--export-speed", type=Path, metavar="CHECKPOINT",
                        help="only measure `coseg retrieval export` of the first two test classes with this model vs "
                             "its raw forward on ready tensors, side by side (export_vs_forward, goal >= 0.90)")
    parser.add_argument("--rounds", type=int, default=7,
                        help="paired rounds of --loss-times and --export-speed (default 7; more: a tighter median)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    alone = "--export-speed" if args.export_speed else "--loss-times" if args.loss_times else None
    ignored = {"--loss-times": args.loss_times, "--validation": args.validation}
    if args.export_speed:  # the model file's export, in the export's own batches: no row is built
        ignored.update({"--methods": args.methods, "--set": args.set, "--config": args.config, "--work": args.work})
    unused = [option for option, given in ignored.items() if given and option != alone]
    if alone and unused:  # silently ignored, they would seem to apply to what is measured
        parser.error(f"{', '.join(unused)} cannot be used with {alone}, which measures "
                     + ("the export of its model file alone" if args.export_speed else "each method's loss alone"))
    if args.minutes is None and not alone:
        parser.error("--minutes is required (unless --loss-times or --export-speed)")
    names = (list(dict.fromkeys(m.strip() for m in args.methods.split(","))) if args.methods is not None
             else list(METHODS))  # "" (an unset shell variable): the unknown method '', not all of them
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown method(s) {', '.join(map(repr, unknown))}; valid: {', '.join(METHODS)}")
    register_pml_losses()
    columns = ("R@1", "MAP@R") if args.validation else COLUMNS
    work = args.work or args.out.with_suffix("").with_name(args.out.stem + "_runs")

    def method_config(name: str) -> RetrievalTrainConfig:  # a rerun of the benchmark trains its rows anew
        cfg = config_from_dict(RetrievalTrainConfig, {**shared, **METHODS[name], "output": str(work / name),
                                                      "overwrite": True}, f"method {name}")
        check_config(cfg)  # what the trainer would refuse, refused before the rows ahead of it run
        return cfg

    with one_line(*EXPECTED, yaml.YAMLError):  # what was given, checked before minutes of work
        shared = {**BASE, **(read_config_file(RetrievalTrainConfig, args.config) if args.config else {})}
        shared.update(overrides(args.set))
        shared.update(data=str(args.data), layout="folders", train_split="train", minutes=args.minutes,
                      cache_dir=str(shared.get("cache_dir") or work / "cache"))
        if args.export_speed:
            classes = list(load_split(args.data / "splits.json", "test"))[:2]
            if not args.export_speed.is_file():
                raise FileNotFoundError(errno.ENOENT, "no model file", str(args.export_speed))
            load_for_retrieval(args.export_speed, torch.device("cpu"))  # e.g. a co-segmentation model's file
        else:
            load_retrieval_split(args.data, "train", "folders")
            if not (args.validation or args.loss_times):
                load_retrieval_split(args.data, "test", "folders")
            configs = {name: method_config(name) for name in names}
    check_writable(args.out)
    if args.export_speed:
        speed = measure_export_vs_forward(args.export_speed, [args.data / c for c in classes], rounds=args.rounds)
        print(f"export_vs_forward: {speed['export_vs_forward']:.3f} (rounds: {speed['export_vs_forward_pairs']}); "
              f"forward {speed['forward_images_per_s']:.1f} images/s, export {speed['export_images_per_s']:.1f}")
        write_json(args.out, {"checkpoint": str(args.export_speed), **speed}, indent=2)
        return
    if args.loss_times:
        write_loss_times(args.out, {name: cfg for name, cfg in configs.items() if name != FROZEN}, args.rounds)
        return
    check_writable(work, "--work", folder=True)
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        cfg = configs[name]
        device = resolve_device(cfg.device)
        start = time.perf_counter()
        rows[name] = (frozen_row(cfg, args.data, device, args.validation) if name == FROZEN
                      else method_row(name, cfg, args.data, device, args.validation))
        rows[name]["wall_seconds"] = round(time.perf_counter() - start, 1)
        print(f"{name}: " + "  ".join(f"{c} {rows[name][c]:.1f}" for c in columns), flush=True)
    print_table(rows, columns)
    shared_cfg = config_to_dict(config_from_dict(RetrievalTrainConfig, {**shared, "output": str(work)}, "shared"))
    write_json(args.out, {"minutes_per_method": args.minutes, "scored_on": "validation classes" if args.validation
                          else "test classes", "rows": rows, "shared_config": shared_cfg}, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
