"""iCoseg benchmark: train on ``train30`` (validation groups carved from it), evaluate on ``test8``.

    .venv/bin/python benchmarks/coseg_icoseg.py --data ../shared/data/icoseg --minutes 30 --out bench_out/icoseg.json
    .venv/bin/python benchmarks/coseg_icoseg.py ... --set triplet_weight=0        # the Dice + BCE ablation

    .venv/bin/python benchmarks/coseg_icoseg.py ... --set group_levels=0         # the single-image model
    .venv/bin/python benchmarks/coseg_icoseg.py ... --set members=1              # one run of the whole budget
    .venv/bin/python benchmarks/coseg_icoseg.py --data ... --speed-of RUN_DIR --out speed.json  # ratios only
    .venv/bin/python benchmarks/coseg_icoseg.py --data ... --speed-of RUN_DIR --ratios train_vs_plain --out t.json
    .venv/bin/python benchmarks/coseg_icoseg.py --data ... --speed-of RUN_DIR --rounds 5 --out p.json  # fewer rounds
    .venv/bin/python benchmarks/coseg_icoseg.py --data ... --scores-of RUN_DIR --out scores.json  # P/J only

Prints per-group and mean P/J (percent, at the original resolution, per image, then per group, then over groups) of
the model alone, the model + edge filter, the model + edge filter + group colour cut (``coseg evaluate``/``predict``'s
default inference; also with the cut at the model's input size instead of 1.5 times it), and group refinement
through the metric head (its weight chosen on the validation groups), flip test-time augmentation and BatchNorm
statistics adapted to each group (the validation J of each choice is in the JSON), and writes ``P``, ``J``,
``per_group`` (the default inference), ``variants`` (all eleven, with inference seconds and how many images each
left out), ``skipped_files`` (each image or mask that could not be scored, with why: printed, never a reason to
stop), ``minutes``, ``images_per_s`` (the training speed as ``log.csv`` counts it, validation left out; runs before
2026-12-07's sixteenth session recorded the session's average, validation included) and the side-by-side speed
ratios to the JSON:
- ``triplet_share``: IS-Triplet sampler + loss (forward and backward) / one whole train step (goal ≤ 0.05);
- ``predict_vs_forward``: ``predict`` images/s on the test8 groups' files (decode, resize, group inference, edge
  filter, colour cut, upsample, write PNG) / the same group inference, edge filter and colour cut on the images
  already decoded and resized (goal ≥ 0.90); ``edge_filter_share``, ``colour_cut_share``: their parts of that
  inference, timed in the same rounds;
- ``train_vs_plain``: our training loop's images/s / a plain smp-style loop (same model, Dice + BCE, same batches,
  no engine) (goal ≥ 0.95).
test8 images and masks are used for the final evaluation only; model selection uses the held-out train30 groups (a
config that would train or validate on a test8 group is refused before any work).
"""
from __future__ import annotations

import argparse
import errno
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import yaml

from coseg.checkpoints import load_for_inference
from coseg.config import CosegTrainConfig
from coseg.data import find_samples, load_split, printable
from coseg.engine import config_from_dict, config_to_dict, load_config, read_config_file, resolve_device
from coseg.evaluate import evaluate_samples
from coseg.inference import cut_by_colour, images_for, usable_cores
from coseg.models import EdgeFilter, GroupColourCut, GroupRefinement, GroupStatistics, load_model
from coseg.objective import pool_labels
from coseg.predict import empty_masks_warning, predict_folder
from coseg.selection import choose_groups, samples_of
from coseg.train import (RUN_FOLDER, build_augmentation, build_objective, build_optimizer, check_config,
                         split_train_val, train)
from metric.threads import single_threaded_pool
from checks import EXPECTED, check_writable, one_line, overrides, write_json
from timing import paired_ratios, paired_rounds, rounds_in_turn


def median_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def seconds_of(fn: Callable[[], Any]) -> Callable[[], float]:
    """A measurement for :func:`timing.paired_rounds`: the seconds of one call of ``fn``."""
    return lambda: median_time(fn, repeats=1, warmup=0)


def train_batch(cfg: CosegTrainConfig, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random train-sized batch: images (B, 3, S, S) in [0, 1], masks (B, S, S), groups (B,)."""
    g = torch.Generator().manual_seed(seed)
    b, s = cfg.groups_per_batch * cfg.images_per_group, cfg.image_size
    images = torch.rand(b, 3, s, s, generator=g)
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    masks = torch.stack([((yy - s / 2) ** 2 + (xx - s / 2 + 8 * i) ** 2 < (s / 4) ** 2) for i in range(b)]).long()
    groups = torch.arange(cfg.groups_per_batch).repeat_interleave(cfg.images_per_group)
    return images, masks, groups


def measure_triplet_share(model: torch.nn.Module, cfg: CosegTrainConfig, rounds: int = 25) -> dict[str, Any]:
    """Time of the IS-Triplet term (sampling + loss + its backward into the embeddings) / a whole train step, side by
    side in ``rounds`` pairs after one warm-up of each (medians in seconds, the ratio's spread as
    :func:`timing.paired_ratios`)."""
    images, masks, groups = train_batch(cfg)
    objective = build_objective(cfg)
    optimizer = build_optimizer(model, cfg)  # freezes the encoder as the run did (encoder_lr_scale 0)
    model.train()

    def step() -> None:
        out = model(images, groups)
        loss = objective(out.mask_logits, out.embeddings, masks, groups)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        out = model(images)
    emb = out.embeddings.detach().requires_grad_(True)
    grid = tuple(emb.shape[-2:])
    probs = torch.nn.functional.adaptive_avg_pool2d(torch.sigmoid(out.mask_logits.detach()), grid).squeeze(1)
    labels = pool_labels(masks, grid)
    triplet = objective.triplet

    def triplet_only() -> None:
        loss = triplet(emb, labels, groups=groups, probabilities=probs)
        loss.backward()

    if triplet is None:
        return {"train_step_s": median_time(step, repeats=3), "triplet_s": 0.0, "triplet_share": 0.0}
    step()
    triplet_only()  # warm-up of both
    step_s, triplet_s = paired_rounds(seconds_of(step), seconds_of(triplet_only), rounds)
    return {"train_step_s": statistics.median(step_s), "triplet_s": statistics.median(triplet_s),
            **paired_ratios(triplet_s, step_s, "triplet_share")}


def measure_train_vs_plain(model_path: Path, cfg: CosegTrainConfig, data: Path, steps: int = 8,
                           rounds: int = 24) -> dict[str, Any]:
    """images/s of our training loop (the engine's step: lr schedule, autocast, NaN guard, optimizer, with
    CosegTask's augmentation and the full objective incl. IS-Triplet) vs a plain loop (same model in the same memory
    format, same augmentation, Dice + BCE, backward, step) over the same cached batches. Ours is the engine's own
    train-loop rate (``images_per_s`` of the epoch row: validation, checkpoint writes and the first step excluded),
    the plain loop's counted alike (from the end of its first step)."""
    import segmentation_models_pytorch as smp
    from torch.utils.data import DataLoader

    from coseg.data import CosegDataset, ImageCache
    from coseg.engine import DistInfo, Engine
    from coseg.train import CosegTask
    from metric.samplers import PKBatchSampler

    scan = find_samples(data, "icoseg")
    groups = choose_groups(scan, data / "splits.json", "train30", [])[:6]
    dataset = CosegDataset(samples_of(scan, groups), cfg.image_size, ImageCache(cfg.image_size, progress=False))
    sampler = PKBatchSampler(dataset.group_ids, cfg.groups_per_batch, cfg.images_per_group, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler)
    batches = [b for _, b in zip(range(steps), loader)]
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

    def augmentation() -> Any:
        torch.manual_seed(0)
        return build_augmentation(cfg)

    def plain() -> float:
        model = load_model(model_path).to(memory_format=memory_format).train()
        if cfg.encoder_lr_scale == 0:  # the same trainable parameters as the run
            model.freeze_encoder()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        dice, bce = smp.losses.DiceLoss("binary"), smp.losses.SoftBCEWithLogitsLoss()
        augment = augmentation()
        start, images, first = time.perf_counter(), 0, None
        for b in batches:
            x = b["image"].float() / 255
            y = b["mask"].unsqueeze(1).float()
            if augment is not None:
                x, y = augment(x, y)
                y = (y > 0.5).float()
            logits = model(x.contiguous(memory_format=memory_format), b["group"]).mask_logits
            loss = dice(logits, y) + bce(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            images += len(b["image"])
            first = first or (time.perf_counter(), images)
        end = time.perf_counter()
        if len(batches) > 1:  # from the end of the first step on, as the engine's images_per_s counts (ours)
            start, images = first[0], images - first[1]
        return images / (end - start)

    def ours() -> float:
        model = load_model(model_path)
        opt = build_optimizer(model, cfg)
        with tempfile.TemporaryDirectory() as tmp:
            engine = Engine(model, opt, Path(tmp), dist=DistInfo(), epochs=1, quiet=True,
                            channels_last=cfg.channels_last)
            task = CosegTask(build_objective(cfg), augmentation(), None, torch.device("cpu"),
                             channels_last=cfg.channels_last)
            fit = engine.fit(task, batches)
        return float(fit.history[0]["images_per_s"])

    plain()  # warm-up (allocator, kernels)
    p, o = paired_rounds(plain, ours, rounds)
    return {"plain_images_per_s": statistics.median(p), "ours_images_per_s": statistics.median(o),
            **paired_ratios(o, p, "train_vs_plain")}


def measure_predict_vs_forward(model_path: Path, image_size: int, samples: list, rounds: int = 25) -> dict[str, Any]:
    """``predict_folder`` on the files of the samples' groups (decode, resize, group inference, edge filter, colour
    cut, upsample to each image's size, write PNG) vs the same group inference (``predict_group``, chunks of 8
    sharing each group's consensus, the default edge filter, then the default group colour cut) on the groups'
    images already decoded and resized; and the edge filter's and the colour cut's shares of that inference. All four
    are timed in each of ``rounds`` rounds whose order alternates (:func:`timing.rounds_in_turn`) after a warm-up;
    each ratio is the median of its rounds' ratios, with their spread (:func:`timing.paired_ratios`). The model is
    loaded as ``coseg predict`` loads it, and both sides use ``coseg predict``'s default inference."""
    device = torch.device("cpu")
    model, _ = load_for_inference(model_path, device, image_size)
    edges, colour = EdgeFilter(), GroupColourCut()  # coseg predict's defaults
    per_group: dict[Path, list[Path]] = {}
    for sample in samples:  # the group folders, as the scan found them
        per_group.setdefault(sample.image.parent, []).append(sample.image)
    group_dirs = sorted(per_group)
    ready, ready_cut = [], []  # uint8 images at the model's size and at the colour cut's
    for d in group_dirs:
        files = images_for(sorted(per_group[d]), image_size, colour)
        items = [files[i] for i in range(len(files))]
        ready.append(torch.stack([item["image"] for item in items]))
        ready_cut.append(torch.stack([item["cut_image"] for item in items]))
    inputs = [(x.float() / 255).contiguous(memory_format=torch.channels_last) for x in ready]
    n = sum(len(x) for x in ready)

    with single_threaded_pool(usable_cores()) as pool:
        def forward() -> None:
            for x, x8 in zip(inputs, ready_cut):
                cut_by_colour(colour, x8, model.predict_group(x, chunk_size=8, edges=edges)[:, 0], pool, grouped=True)

        probs = [model.predict_group(x, chunk_size=8) for x in inputs]
        filtered = [edges(p, x)[:, 0] for p, x in zip(probs, inputs)]

        def edge_filter_only() -> None:
            for p, x in zip(probs, inputs):
                edges(p, x)

        def colour_cut_only() -> None:
            for p, x8 in zip(filtered, ready_cut):
                cut_by_colour(colour, x8, p, pool, grouped=True)

        with tempfile.TemporaryDirectory() as folders:
            groups = Path(folders) / "groups"
            groups.mkdir()
            for i, d in enumerate(group_dirs):
                (groups / f"{i:02d}").symlink_to(d.resolve(), target_is_directory=True)

            reports = []  # one a round: the first one's empty-masks warning is printed, once

            def predict() -> float:
                """Seconds of one ``predict_folder`` into a new output folder (its removal afterwards not timed)."""
                with tempfile.TemporaryDirectory() as tmp:
                    start = time.perf_counter()
                    report = predict_folder(model, image_size, groups, Path(tmp), device, batch_size=8,
                                            progress=False, edges=edges, colour=colour, warn_empty=False)
                    seconds = time.perf_counter() - start
                reports.append(report)
                return seconds

            forward()  # warm-up
            edge_filter_only()
            colour_cut_only()
            forward_s, predict_s, edge_s, colour_s = rounds_in_turn(
                [seconds_of(forward), predict, seconds_of(edge_filter_only), seconds_of(colour_cut_only)], rounds)
    warning = empty_masks_warning(reports[0].predicted, reports[0].empty)
    if warning is not None:
        print(warning, file=sys.stderr)
    return {**paired_ratios(edge_s, forward_s, "edge_filter_share"),
            **paired_ratios(colour_s, forward_s, "colour_cut_share"),
            "forward_images_per_s": n / statistics.median(forward_s),
            "predict_images_per_s": n / statistics.median(predict_s),
            **paired_ratios(forward_s, predict_s, "predict_vs_forward")}


def trained_model(run_dir: Path, cfg: CosegTrainConfig) -> Path:
    """The model file the training speed ratios are measured on: the run's best model, an ensemble's first
    member's (``member0/``, which an ensemble put together by ``coseg ensemble`` does not have)."""
    return run_dir / "member0" / "best.safetensors" if cfg.members > 1 else run_dir / "best.safetensors"


SPEED_RATIOS = ("triplet_share", "predict_vs_forward", "train_vs_plain")
"""The side-by-side speed measurements (``--ratios``); ``predict_vs_forward`` also gives the edge filter's and the
colour cut's shares of the group inference."""


def speed_ratios(run_dir: Path, cfg: CosegTrainConfig, data: Path, ratios: Sequence[str] = SPEED_RATIOS,
                 rounds: Optional[int] = None) -> dict[str, Any]:
    """The side-by-side speed measurements ``ratios`` (of :data:`SPEED_RATIOS`) of the run's best model (rounded),
    each in ``rounds`` paired rounds (default: each measurement's own); an ensemble's training ones on its first
    member."""
    model_path = run_dir / "best.safetensors"
    trained = trained_model(run_dir, cfg)
    given = {} if rounds is None else {"rounds": rounds}
    out: dict[str, Any] = {}
    if "triplet_share" in ratios:
        out.update(measure_triplet_share(load_model(trained), cfg, **given))
    if "predict_vs_forward" in ratios:
        scan = find_samples(data, "icoseg")
        test = samples_of(scan, choose_groups(scan, data / "splits.json", "test8", []))
        out.update(measure_predict_vs_forward(model_path, cfg.image_size, test, **given))
    if "train_vs_plain" in ratios:
        out.update(measure_train_vs_plain(trained, cfg, data, **given))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def selection_groups(cfg: CosegTrainConfig, scan: Any, test: list[str]) -> list[str]:
    """The validation groups the run chooses its model on (:func:`split_train_val`); a ValueError when a training or
    validation group is a ``test8`` group (``test``), whatever ``--set``/``--config`` (or a finished run's
    config.yaml) asked for: test8 is for the final evaluation only."""
    train_groups, val_groups = split_train_val(cfg, scan)
    test_groups = set(test)
    for role, groups, fix in (("validation", val_groups, "model selection must use groups held out of train30"),
                              ("training", train_groups, "training must use train30 groups only")):
        shared = [printable(g) for g in groups if g in test_groups]
        if shared:
            raise ValueError(f"{role} group(s) {', '.join(shared)} belong to test8: {fix} "
                             "(check val_groups, train_groups and splits in the config)")
    return val_groups


DEFAULT_VARIANT = "model+edges+colour"  # what coseg evaluate / predict do by default


def quality(run_dir: Path, cfg: CosegTrainConfig, data: Path, val_groups: list[str]) -> dict[str, Any]:
    """P/J on test8 of the run's best model: alone, with the edge filter, with the edge filter and the group colour
    cut (the default inference), and with group refinement (its weight chosen on the validation groups), flip or
    BatchNorm statistics adapted to each group on top; validation J of each choice; the files left out."""
    device = resolve_device(cfg.device)
    model = load_model(run_dir / "best.safetensors").to(device).eval()
    scan = find_samples(data, "icoseg")
    short = load_split(data / "splits.json", "test8")  # {group: short name}; a list names itself
    test = samples_of(scan, choose_groups(scan, data / "splits.json", "test8", []), labelled=False)
    val = samples_of(scan, val_groups, labelled=False)
    edges = EdgeFilter()
    skipped: dict[str, str] = {}  # file: why, of every scoring (test8 and validation), in the order met

    def scored(samples: list, refinement: Optional[GroupRefinement] = None, flip: bool = False,
               edge_filter: Optional[EdgeFilter] = edges, colour: Optional[GroupColourCut] = None,
               statistics: Optional[GroupStatistics] = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        evaluation = evaluate_samples(model, samples, cfg.image_size, device, progress=False, refinement=refinement,
                                      flip=flip, edges=edge_filter, colour=colour, statistics=statistics)
        for file, why in evaluation.skipped:
            skipped.setdefault(file, why)
        s = evaluation.summary
        return {"P": round(s["P"], 2), "J": round(s["J"], 2), "seconds": round(time.perf_counter() - t0, 1),
                "skipped": s["skipped"],
                "per_group": {short.get(g, printable(g)): {"P": round(d["P"], 2), "J": round(d["J"], 2)}
                              for g, d in s["per_group"].items()}}

    # refinement weight chosen on the validation groups carved from train30, never on test8
    candidates = [GroupRefinement(2, w) for w in (1.0, 2.0, 4.0)]
    val_j = {c.weight: scored(val, c)["J"] for c in candidates} if val else {}
    val_plain = scored(val, edge_filter=None)["J"] if val else None
    val_edges = scored(val)["J"] if val else None
    chosen = max(candidates, key=lambda c: val_j[c.weight]) if val else GroupRefinement()
    val_flip = scored(val, flip=True)["J"] if val else None
    colour, colour_at_input = GroupColourCut(), GroupColourCut(scale=1)
    val_colour = scored(val, colour=colour)["J"] if val else None
    val_colour_at_input = scored(val, colour=colour_at_input)["J"] if val else None
    adapted = GroupStatistics()
    val_adapted = ({"model": scored(val, edge_filter=None, statistics=adapted)["J"],
                    "model+edges": scored(val, statistics=adapted)["J"],
                    "model+edges+colour": scored(val, colour=colour, statistics=adapted)["J"]} if val else {})
    variants = {"model": scored(test, edge_filter=None), "model+edges": scored(test),
                "model+edges+refinement": scored(test, chosen), "model+edges+flip": scored(test, flip=True),
                "model+edges+flip+refinement": scored(test, chosen, flip=True),
                "model+edges+colour": scored(test, colour=colour),
                "model+edges+colour_at_input_size": scored(test, colour=colour_at_input),
                "model+edges+flip+colour": scored(test, flip=True, colour=colour),
                "model+statistics": scored(test, edge_filter=None, statistics=adapted),
                "model+edges+statistics": scored(test, statistics=adapted),
                "model+edges+colour+statistics": scored(test, colour=colour, statistics=adapted)}
    first = variants[DEFAULT_VARIANT]
    return {
        "P": first["P"], "J": first["J"], "per_group": first["per_group"],
        "skipped_files": [{"file": file, "reason": why} for file, why in skipped.items()],
        "val_groups": [printable(g) for g in val_groups], "eval_seconds": first["seconds"],
        "variants": variants,
        "edges": {"radius": edges.radius, "eps": edges.eps, "val_J": val_edges, "val_J_without": val_plain},
        "refinement": {"iterations": chosen.iterations, "weight": chosen.weight, "val_J_by_weight": val_j,
                       "val_J_without": val_edges},
        "flip": {"val_J": val_flip, "val_J_without": val_edges},
        "colour": {"iterations": colour.iterations, "sure": colour.sure, "scale": colour.scale, "val_J": val_colour,
                   "val_J_without": val_edges, "val_J_at_input_size": val_colour_at_input},
        "statistics": {"strength": adapted.strength, "val_J": val_adapted,
                       "val_J_without": {"model": val_plain, "model+edges": val_edges,
                                         "model+edges+colour": val_colour}},
        "config": config_to_dict(cfg),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="iCoseg root (images/, ground_truth/, splits.json)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--run-dir", type=Path, help="where the run goes (default: beside --out)")
    parser.add_argument("--overwrite", action="store_true", help="train anew into a run folder that holds a run")
    parser.add_argument("--config", type=Path, help="YAML config of the run (defaults: the toolkit's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--skip-speed", action="store_true", help="skip the speed ratios")
    parser.add_argument("--speed-of", type=Path, metavar="RUN_DIR",
                        help="no training: measure the speed ratios of a finished run (its config.yaml, best.*)")
    parser.add_argument("--ratios", default=",".join(SPEED_RATIOS), metavar="NAMES",
                        help="the speed ratios to measure, comma-separated (default: all, which had not finished after "
                             "22 minutes for the default ensemble; predict_vs_forward also gives the edge filter's "
                             "and colour cut's shares)")
    parser.add_argument("--rounds", type=int, metavar="N",
                        help="paired rounds of each speed ratio (default: 25, train_vs_plain 24; predict_vs_forward's "
                             "rounds took about 4.5 minutes each for the default ensemble: each times predict, the "
                             "same inference, the edge filter and the colour cut alone)")
    parser.add_argument("--scores-of", type=Path, metavar="RUN_DIR",
                        help="no training: score a finished run's best model (its config.yaml picks the validation "
                             "groups) with the current inference")
    parser.add_argument("--minutes", type=float, help="training time budget (required unless --speed-of/--scores-of)")
    args = parser.parse_args()
    torch.manual_seed(0)
    finished = args.speed_of or args.scores_of
    unused = [option for option, given in (("--scores-of", args.speed_of and args.scores_of), ("--set", args.set),
                                           ("--config", args.config), ("--minutes", args.minutes is not None),
                                           ("--run-dir", args.run_dir), ("--overwrite", args.overwrite)) if given]
    if finished is not None and unused:  # silently ignored, they would seem to apply to what is measured
        parser.error(f"{', '.join(unused)} cannot be used with {'--speed-of' if args.speed_of else '--scores-of'} "
                     "(the finished run's config.yaml says how it was trained and is scored)")
    if args.speed_of and args.skip_speed:
        parser.error("--skip-speed cannot be used with --speed-of, which measures the speed ratios alone")
    ratios = [name.strip() for name in args.ratios.split(",") if name.strip()]
    unknown = [name for name in ratios if name not in SPEED_RATIOS] or ([] if ratios else ["''"])
    if unknown:
        parser.error(f"--ratios: unknown ratio(s) {', '.join(unknown)}; choose among {', '.join(SPEED_RATIOS)}")
    speed_options = [option for option, given in (("--ratios", args.ratios != parser.get_default("ratios")),
                                                  ("--rounds", args.rounds is not None)) if given]
    if (args.skip_speed or args.scores_of) and speed_options:
        parser.error(f"{', '.join(speed_options)} cannot be used with --skip-speed or --scores-of, which measure no "
                     "speed ratio")
    if args.rounds is not None and args.rounds < 2:
        parser.error(f"--rounds must be at least 2 (a ratio's spread needs two rounds), got {args.rounds}")
    if finished is None and args.minutes is None:
        parser.error("--minutes is required (unless --speed-of or --scores-of)")
    if args.minutes is not None and not (0 <= args.minutes < float("inf")):
        parser.error(f"--minutes must be a finite number >= 0 (0: no time budget), got {args.minutes}")
    run_dir = finished or args.run_dir or args.out.with_suffix("").with_name(args.out.stem + "_run")
    with one_line(*EXPECTED, yaml.YAMLError):  # what was given, checked before minutes of work
        scan = find_samples(args.data, "icoseg")
        choose_groups(scan, args.data / "splits.json", "train30", [])
        test = choose_groups(scan, args.data / "splits.json", "test8", [])
        if finished:
            cfg = load_config(CosegTrainConfig, finished / "config.yaml")
            if not (finished / "best.safetensors").is_file():
                raise FileNotFoundError(errno.ENOENT, "no trained model (best.safetensors)", str(finished))
            if args.speed_of and not trained_model(finished, cfg).is_file():  # its train step is timed
                raise FileNotFoundError(errno.ENOENT, f"no trained member of its {cfg.members}-member ensemble "
                                        "(member0/best.safetensors: the training speed ratios are measured on it)",
                                        str(finished))
        else:
            base = read_config_file(CosegTrainConfig, args.config) if args.config else {}
            sets = overrides(args.set)  # each replaces the config file's other ways of giving it, as coseg train's do
            replaced = {k for key in sets for k in CosegTrainConfig.REPLACED_BY.get(key, ())}
            base = {k: v for k, v in base.items() if k not in replaced} | sets
            base.update(data=str(args.data), layout="icoseg", output=str(run_dir), minutes=args.minutes,
                        epochs=int(base.get("epochs", 1000)))
            if not base.get("train_groups"):  # explicit training groups (checked against test8 below) or train30
                base["train_split"] = "train30"
            if args.overwrite:
                base["overwrite"] = True
            cfg = config_from_dict(CosegTrainConfig, base, "benchmark config")
            check_config(cfg)
            RUN_FOLDER.check(cfg, resume=False)
        if not args.speed_of:
            val_groups = selection_groups(cfg, scan, test)
        if finished:
            models = [finished / "best.safetensors"] + ([trained_model(finished, cfg)] if args.speed_of else [])
            for model_file in dict.fromkeys(models):
                load_model(model_file)  # a file that is not a model, or another kind's: refused before the work
    check_writable(args.out)
    if args.speed_of:
        out = speed_ratios(args.speed_of, cfg, args.data, ratios, args.rounds)
        print("\n".join(f"{k}: {v}" for k, v in out.items()))
        write_json(args.out, out)
        return
    if args.scores_of:
        out = {**quality(args.scores_of, cfg, args.data, val_groups), "scores_of": str(args.scores_of)}
    else:
        check_writable(run_dir, "--run-dir", folder=True)
        result = train(cfg)
        out = quality(run_dir, cfg, args.data, result.val_groups)
        out.update({
            "minutes": round(result.fit.seconds / 60, 2), "images_per_s": round(result.fit.images_per_s, 2),
            "epochs": result.fit.epochs_run, "best_epoch": result.fit.best_epoch,
            "val_J": None if result.fit.best_metric is None else round(result.fit.best_metric, 2),
            "members": [{"minutes": round(f.seconds / 60, 2), "epochs": f.epochs_run, "best_epoch": f.best_epoch,
                         "val_J": None if f.best_metric is None else round(f.best_metric, 2)}
                        for f in result.members]})
        write_json(args.out, out)  # quality first: a failing speed probe loses nothing
        if not args.skip_speed:
            out.update(speed_ratios(run_dir, cfg, args.data, ratios, args.rounds))

    variants = out["variants"]
    first = variants[DEFAULT_VARIANT]
    groups = sorted(first["per_group"], key=lambda g: first["per_group"][g]["J"])
    width = max(len(g) for g in groups + ["mean"])
    names = list(variants)
    print(f"{'group':<{width}}  " + "  ".join(f"{n + ' P':>20}  {'J':>6}" for n in names))
    for g in groups + ["mean"]:
        cells = [variants[n]["per_group"][g] if g != "mean" else variants[n] for n in names]
        print(f"{g:<{width}}  " + "  ".join(f"{c['P']:20.2f}  {c['J']:6.2f}" for c in cells))
    for i, m in enumerate(out.get("members", [])):
        print(f"member {i}: {m['minutes']} min, {m['epochs']} epochs, best validation J {m['val_J']} at epoch "
              f"{m['best_epoch']}")
    if "minutes" in out:
        print(f"trained {out['minutes']} min, {out['epochs']} epochs, {out['images_per_s']} images/s; "
              + (f"the ensemble's validation J {out['val_J']}" if out.get("members") else
                 f"best validation J {out['val_J']} at epoch {out['best_epoch']}"))
    if out["skipped_files"]:
        print(f"skipped {len(out['skipped_files'])} file(s) that could not be scored (left out of the scores):")
        for entry in out["skipped_files"]:
            print(f"  {entry['file']}: {entry['reason']}")
    print("inference seconds on test8: " + ", ".join(f"{n} {variants[n]['seconds']}" for n in names))
    print(f"validation J: without edge filter {out['edges']['val_J_without']}, with it {out['edges']['val_J']}; "
          f"+ refinement by weight {out['refinement']['val_J_by_weight']} (chosen {out['refinement']['weight']}); "
          f"+ flip {out['flip']['val_J']}; + colour cut {out['colour']['val_J']} (at the model's input size "
          f"{out['colour'].get('val_J_at_input_size')}); group statistics "
          f"{out['statistics']['val_J']} (without: {out['statistics']['val_J_without']})")
    for k in ("triplet_share", "predict_vs_forward", "edge_filter_share", "colour_cut_share", "train_vs_plain"):
        if k in out:
            print(f"{k}: {out[k]}" + (f" (rounds: {out[k + '_pairs']})" if k + "_pairs" in out else ""))
    write_json(args.out, out)


if __name__ == "__main__":
    main()
