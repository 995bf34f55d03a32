"""``coseg retrieval train | evaluate | export | search``: thin click wrappers around apps.retrieval, which the
``retrieval`` group of ``apps.cli`` takes from :data:`COMMANDS` when they are first needed."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Optional

import click

from apps.options import (NAMES_FILE_HELP, OutputFolder, UserPath, batch_size_option, check_report_only,
                          checkpoint_option, device_option, echo, echo_report, image_size_option, known_layout,
                          name_list, quiet_option, report_options, training_config, training_options,
                          workers_option)
from apps.retrieval.config import RetrievalTrainConfig


def friendly(fn: Callable) -> Callable:
    """``apps.cli.friendly_errors``, looked up when the command runs (``apps.cli`` imports this module)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from apps.cli import friendly_errors

        return friendly_errors(fn)(*args, **kwargs)

    return wrapper


def _device(name: str):
    from coseg.engine import resolve_device

    return resolve_device(name)


@click.command(context_settings={"show_default": False})
@training_options(RetrievalTrainConfig)
@friendly
def train(config_file: Optional[Path], resume: bool, **params: Any) -> None:
    """Train retrieval embeddings. Writes OUTPUT/config.yaml, log.csv, last.*, best.* (and OUTPUT/finetune/ for a
    fine-tuning stage)."""
    from apps.retrieval.train import train as run_training

    cfg = training_config(RetrievalTrainConfig, config_file, params, resume)
    result = run_training(cfg, resume=resume)
    if not result.is_main:
        return
    if result.feature_seconds:
        echo(f"backbone features of {len(result.train_classes)} training class(es) ready in "
             f"{result.feature_seconds:.1f} s")
    from apps.cli import echo_skipped, fit_summary

    for stage, fit in result.stages.items():
        lengths = ("--finetune-epochs", "--finetune-minutes") if stage == "finetune" else ("--epochs", "--minutes")
        echo(f"{stage}: {fit_summary(fit, lengths)}")
        if fit.best_metric is not None:
            echo(f"  best validation MAP@R {fit.best_metric:.2f} at epoch {fit.best_epoch} "
                 f"({len(result.val_classes)} held-out class(es))")
    if result.finetune_kept:
        why = "better validation MAP@R" if result.val_classes else "no validation classes: the later stage"
        echo(f"best.safetensors is the fine-tuned model ({why})")
    elif "finetune" in result.stages:
        echo("best.safetensors is the head stage's model (the fine-tuning stage did not validate better)")
    from coseg.data import printable

    echo_skipped("unreadable file(s)", [f"{printable(p)}: {r}" for p, r in result.skipped])
    echo_skipped("class(es) of which no image could be read (left out of training and validation)",
                 [printable(c) for c in result.unreadable_classes])
    echo_skipped("data set entries", [str(p) for p in result.problems])
    from apps.retrieval.train import FINETUNE_DIR

    finetuned = (f"; {FINETUNE_DIR}/: the fine-tuning stage's log.csv, last.*, best.*"
                 if "finetune" in result.stages else "")
    echo(f"outputs: {result.output}/ (best.safetensors, last.safetensors, log.csv, config.yaml{finetuned})")


METRICS = ("R@1", "R@2", "R@4", "R@8", "MAP@R", "NMI")


@click.command()
@checkpoint_option
@click.option("--data", required=True, type=UserPath(exists=True, file_okay=False, path_type=Path),
              help="Data set root.")
@click.option("--output", required=True, type=OutputFolder(path_type=Path),
              help="Folder for summary.json (with --report also neighbours.csv, recall_at_k.csv and report.html).")
@click.option("--layout", default="auto", show_default=True,
              callback=known_layout("apps.retrieval.datasets:RETRIEVAL_LAYOUTS"),
              help="cub, cars, sop, folders or auto.")
@click.option("--split", default="test", show_default=True,
              help="Split to evaluate: test, train, all (every class) or, for class folders, any key of "
                   "DATA/splits.json; with --train-classes, test is the other class folders.")
@click.option("--train-classes", callback=name_list,
              help=f"Folders layout: comma-separated training classes (the others are 'test'). {NAMES_FILE_HELP}")
@image_size_option
@batch_size_option(32)
@device_option
@workers_option
@click.option("--cache-dir", type=UserPath(file_okay=False, path_type=Path),
              help="Folder of decoded images and backbone features to reuse.")
@quiet_option
@report_options("the scores, the R@K curve, and queries (worst first, at even steps) with their 8 nearest "
                "neighbours, distances and right/wrong marks; also the training curves of the checkpoint's run")
@click.option("--report-queries", default=24, show_default=True, type=click.IntRange(1, None),
              help="Queries shown in the report (with --report).")
@friendly
def evaluate(checkpoint: Path, data: Path, output: Path, layout: str, split: str, train_classes: Optional[list[str]],
             image_size: Optional[int], batch_size: int, device: str, workers: int, cache_dir: Optional[Path],
             quiet: bool, report: bool, thumbnail: int, report_queries: int) -> None:
    """Retrieval scores of a model on a labelled split: R@1/2/4/8, MAP@R and NMI in percent (every image whose class
    has another image queries all the others)."""
    from apps.retrieval.evaluate import evaluate_checkpoint
    from coseg.evaluate import overlap_warnings
    from coseg.report.build import build_report

    check_report_only(report, "thumbnail", "report_queries")
    evaluation = evaluate_checkpoint(checkpoint, data, output, layout, split, train_classes, image_size, batch_size,
                                     _device(device), workers, cache_dir, progress=not quiet,
                                     report_queries=report_queries if report else 0)
    summary = evaluation.summary
    for line in overlap_warnings(evaluation.seen, summary["classes"], "classes"):
        echo(line)
    echo("  ".join(f"{name:>6}" for name in METRICS))
    echo("  ".join(f"{summary[name]:6.2f}" for name in METRICS))
    lone = summary["images"] - summary["queries"]
    echo(f"{summary['images']} images, {summary['classes']} classes of split '{split}'"
         + (f" ({lone} image(s) of single-image classes: references only, not queries)" if lone else ""))
    if evaluation.unreadable:
        echo(f"scores over the images that could be read: {len(evaluation.unreadable)} image(s) decoded at start-up "
             "could no longer be read and were left out (listed below)")
    from apps.cli import echo_skipped
    from coseg.data import printable

    echo_skipped("unreadable file(s)", [f"{printable(p)}: {r}" for p, r in evaluation.skipped])
    echo_skipped("data set entries", [str(p) for p in evaluation.problems])
    echo(f"outputs: {output}/summary.json" + (", neighbours.csv, recall_at_k.csv" if report else ""))
    if report:
        echo_report(build_report(output, thumbnail=thumbnail, progress=not quiet))


@click.command()
@checkpoint_option
@click.option("--input", "input_dir", required=True, type=UserPath(exists=True, file_okay=False, path_type=Path),
              help="Folder of images (class subfolders give the manifest's labels).")
@click.option("--output", required=True, type=OutputFolder(path_type=Path),
              help="Folder for embeddings.npy, manifest.csv, index.faiss (and model.safetensors, skipped.csv, "
                   "stamps.npy, export.json).")
@image_size_option
@batch_size_option(32)
@click.option("--shard-size", default=1024, show_default=True, type=click.IntRange(1, None),
              help="Images per stored shard: an interrupted export resumes after the last finished shard.")
@click.option("--index", "index_type", type=click.Choice(["flat", "hnsw"]), default="flat", show_default=True,
              help="faiss index: exact (flat) or HNSW graph (approximate, for very large collections).")
@click.option("--overwrite", is_flag=True,
              help="Replace an export of another folder or by another model that OUTPUT holds (default: refuse, so "
                   "it is not lost).")
@device_option
@workers_option
@quiet_option
@friendly
def export(checkpoint: Path, input_dir: Path, output: Path, image_size: Optional[int], batch_size: int,
           shard_size: int, index_type: str, overwrite: bool, device: str, workers: int, quiet: bool) -> None:
    """Embed every image under INPUT and write the embeddings, a manifest and a faiss index; unreadable files are
    skipped and listed. Run it again after an interruption: finished shards are kept; after images were added or
    changed: only those are embedded."""
    from apps.retrieval.export import export_folder

    report = export_folder(checkpoint, input_dir, output, image_size, batch_size, _device(device), workers,
                           shard_size, index_type, progress=not quiet, overwrite=overwrite)
    if report.up_to_date:
        echo(f"up to date: {report.images} image(s) already exported with this model")
    else:
        reused = (f" ({report.shards_reused} of {report.shards} shard(s) from an earlier run)"
                  if report.shards_reused else "")
        if report.images_reused:
            reused += f" ({report.images_reused} image(s) unchanged since the last export, not embedded again)"
        echo(f"exported {report.images} image(s) × {report.dim} dimensions{reused}")
    if report.skipped:
        echo(f"skipped {len(report.skipped)} file(s) or folder(s) (listed in skipped.csv):")
        for path, reason in report.skipped[:10]:
            echo(f"  {path}: {reason}")
    echo(f"outputs: {output}/embeddings.npy, manifest.csv, index.faiss")


@click.command()
@click.option("--index", "index_dir", required=True, type=UserPath(exists=True, file_okay=False, path_type=Path),
              help="Folder written by `coseg retrieval export`.")
@click.option("--query", "queries", required=True, multiple=True, type=UserPath(exists=True, path_type=Path),
              help="Query image, or folder of query images; repeat for several.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, None), help="Neighbours per query.")
@click.option("--output", type=UserPath(dir_okay=False, path_type=Path),
              help="Also save the table as CSV (query, rank, path, label, distance).")
@batch_size_option(32)
@device_option
@quiet_option
@friendly
def search(index_dir: Path, queries: tuple[Path, ...], k: int, output: Optional[Path], batch_size: int,
           device: str, quiet: bool) -> None:
    """The K nearest exported images of each query: rank, path, Euclidean distance (embedding units)."""
    from apps.retrieval.search import search_export

    result = search_export(index_dir, queries, k, _device(device), batch_size, output, progress=not quiet)
    for warning in result.warnings:
        echo(f"warning: {warning}")
    width = max([len(n.path) for n in result.neighbours] + [4])
    current = None
    for n in result.neighbours:
        if n.query != current:
            current = n.query
            echo(f"query: {n.query}")
            echo(f"{'rank':>4}  {'path':<{width}}  distance")
        echo(f"{n.rank:>4}  {n.path:<{width}}  {n.distance:.4f}")
    if result.neighbours and k > result.exported:
        echo(f"note: the export holds {result.exported} image(s), fewer than --k {k}: each query's list ends there")
    from apps.cli import echo_skipped

    echo_skipped("query file(s) or folder(s)", result.skipped)
    if output is not None:
        echo(f"outputs: {output}")


COMMANDS = (train, evaluate, export, search)
"""The commands of ``coseg retrieval``."""
