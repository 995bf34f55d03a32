"""The ``coseg`` command: thin click wrappers around library functions."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable, Optional

import click

from apps.options import training_config, training_options


def friendly_errors(fn: Callable) -> Callable:
    """Show expected failures (bad input, bad config, unsafe checkpoint) as one clear line, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from coseg.data import DataFileError
        from coseg.engine import CheckpointError, ConfigError, NonFiniteLossError

        try:
            return fn(*args, **kwargs)
        except (ValueError, KeyError, DataFileError, ConfigError, CheckpointError, NonFiniteLossError,
                FileNotFoundError) as e:
            raise click.ClickException(str(e).strip("'\"")) from None

    return wrapper


def echo_skipped(what: str, lines: list[str]) -> None:
    """Tell what a run left out, one file per line (names printable even when not UTF-8)."""
    if lines:
        click.echo(f"skipped {len(lines)} {what}:")
        for line in lines:
            click.echo(f"  {line}")


def _refinement(iterations: int, weight: float):
    from coseg.models import GroupRefinement

    return GroupRefinement(iterations, weight) if iterations else None


def _device(name: str):
    from coseg.engine import resolve_device

    return resolve_device(name)


def inference_options(fn: Callable) -> Callable:
    """The options evaluate and predict share: group mode, refinement, device, workers, quiet."""
    for option in reversed([
        click.option("--group-mode/--single-image", default=True, show_default=True,
                     help="Predict each group's images together (sub-folders are groups) or every image alone."),
        click.option("--refine-iterations", default=0, show_default=True,
                     help="Group refinement through the pixel embeddings: rounds of prototype updates "
                          "(0 = off; group mode)."),
        click.option("--refine-weight", default=2.0, show_default=True, help="Logit weight of the refinement score."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--workers", default=0, show_default=True, help="DataLoader worker processes."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Image co-segmentation and retrieval with metric-learning heads."""


from coseg.config import CosegTrainConfig  # noqa: E402  (options are generated from the config's fields)


@main.command(context_settings={"show_default": False})
@training_options(CosegTrainConfig)
@friendly_errors
def train(config_file: Optional[Path], resume: bool, **params: Any) -> None:
    """Train a co-segmentation model. Writes OUTPUT/config.yaml, log.csv, last.*, best.*."""
    from coseg.train import train as run_training

    cfg = training_config(CosegTrainConfig, config_file, params)
    result = run_training(cfg, resume=resume)
    fit = result.fit
    click.echo(f"trained {fit.epochs_run} epoch(s) in {fit.seconds / 60:.1f} min ({fit.images_per_s:.1f} images/s)"
               + (" — stopped by the time budget" if fit.stopped_by_time else ""))
    if fit.best_metric is not None:
        click.echo(f"best validation J {fit.best_metric:.2f} at epoch {fit.best_epoch} "
                   f"({len(result.val_groups)} held-out group(s))")
    from coseg.data import printable

    echo_skipped("unreadable file(s)", [f"{printable(p)}: {r}" for p, r in result.skipped])
    echo_skipped("unpaired file(s) or folder(s)", [str(p) for p in result.problems])
    click.echo(f"outputs: {result.output}/ (best.safetensors, last.safetensors, log.csv, config.yaml)")


@main.command()
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Model file (best.safetensors or last.safetensors of a run).")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Data set root.")
@click.option("--layout", default="auto", show_default=True, help="icoseg, internet, sbcoseg, folders or auto.")
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for summary.json and per_image.csv.")
@click.option("--splits", type=click.Path(exists=True, dir_okay=False), help="Splits JSON (default: DATA/splits.json).")
@click.option("--split", help="Key of the group list to evaluate in the splits file (e.g. test8). Default: all groups.")
@click.option("--groups", help="Explicit comma-separated groups to evaluate (overrides --split).")
@click.option("--image-size", type=int, help="Inference size (default: the size the checkpoint was trained at).")
@click.option("--batch-size", default=8, show_default=True, help="Images per forward pass.")
@click.option("--empty", type=click.Choice(["exclude", "zero"]), default="exclude", show_default=True,
              help="Images with an empty ground truth: leave them out of J, or count their J as 0 (both are saved).")
@inference_options
@friendly_errors
def evaluate(checkpoint: Path, data: Path, layout: str, output: Path, splits: Optional[str], split: Optional[str],
             groups: Optional[str], image_size: Optional[int], batch_size: int, empty: str, group_mode: bool,
             refine_iterations: int, refine_weight: float, device: str, workers: int, quiet: bool) -> None:
    """Score a model on a labelled data set: P and J (percent) at the ground truth's resolution, averaged per
    group, then over groups."""
    from coseg.checkpoints import load_for_inference
    from coseg.data import find_samples
    from coseg.evaluate import evaluate_samples, write_evaluation
    from coseg.selection import choose_groups, default_splits_file, samples_of

    dev = _device(device)
    model, size = load_for_inference(checkpoint, dev, image_size)
    scan = find_samples(data, layout)
    explicit = [g.strip() for g in groups.split(",")] if groups else []
    chosen = choose_groups(scan, default_splits_file(data, splits), split, explicit)
    evaluation = evaluate_samples(model, samples_of(scan, chosen), size, dev, batch_size, workers, empty,  # type: ignore[arg-type]
                                  progress=not quiet, group_mode=group_mode,
                                  refinement=_refinement(refine_iterations, refine_weight))
    write_evaluation(evaluation, output)
    _print_summary(evaluation.summary)
    echo_skipped("unreadable file(s)", [reason for _, reason in evaluation.skipped])
    echo_skipped("unpaired file(s) or folder(s)", [str(p) for p in scan.problems])
    click.echo(f"outputs: {output}/summary.json, {output}/per_image.csv")


def _print_summary(summary: dict) -> None:
    from coseg.data import printable

    width = max([len(printable(g)) for g in summary["per_group"]] + [5])
    click.echo(f"{'group':<{width}}  {'P':>6}  {'J':>6}  images")
    for g, d in sorted(summary["per_group"].items(), key=lambda kv: printable(kv[0])):
        click.echo(f"{printable(g):<{width}}  {d['P']:6.2f}  {d['J']:6.2f}  {d['images']}")
    click.echo(f"{'mean':<{width}}  {summary['P']:6.2f}  {summary['J']:6.2f}  {summary['images']} "
               f"(empty ground truth: {summary['empty']}, {summary['empty_gt_images']} image(s))")


@main.command()
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Model file (best.safetensors or last.safetensors of a run).")
@click.option("--input", "input_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of images; each subfolder is a group, a flat folder is one group.")
@click.option("--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the masks: OUTPUT/<same relative path>.png (0/255, at each input's size).")
@click.option("--overlays", type=click.Path(file_okay=False, path_type=Path),
              help="Also write image overlays (foreground tinted red) to this folder, same relative paths.")
@click.option("--image-size", type=int, help="Inference size (default: the size the checkpoint was trained at).")
@click.option("--batch-size", default=8, show_default=True, help="Images per forward pass.")
@click.option("--overwrite", is_flag=True, help="Predict again masks that already exist (default: keep them).")
@inference_options
@friendly_errors
def predict(checkpoint: Path, input_dir: Path, output: Path, overlays: Optional[Path], image_size: Optional[int],
            batch_size: int, overwrite: bool, group_mode: bool, refine_iterations: int, refine_weight: float,
            device: str, workers: int, quiet: bool) -> None:
    """Segment every image under INPUT and write its mask; unreadable files are skipped and listed."""
    from coseg.checkpoints import load_for_inference
    from coseg.predict import predict_folder

    dev = _device(device)
    model, size = load_for_inference(checkpoint, dev, image_size)
    report = predict_folder(model, size, input_dir, output, dev, batch_size, workers, overlays, overwrite,
                            progress=not quiet, group_mode=group_mode,
                            refinement=_refinement(refine_iterations, refine_weight))
    click.echo(f"wrote {report.written} mask(s)" + (f", kept {report.already_done} already done" if report.already_done else "")
               + f" → {output}/")
    if report.skipped:
        click.echo(f"skipped {len(report.skipped)} unreadable file(s):")
        for _, reason in report.skipped:
            click.echo(f"  {reason}")


@main.command()
@click.option("--output", default="demo_out", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the generated data, the run, the masks and summary.json.")
@click.option("--minutes", default=3.0, show_default=True, help="Training time budget.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@friendly_errors
def demo(output: Path, minutes: float, device: str, quiet: bool) -> None:
    """Run the whole pipeline on a generated co-segmentation set (no data, no network): train from the
    ImageNet encoder, predict the held-out groups, evaluate, print P/J."""
    from coseg.demo import run_demo

    result = run_demo(output, minutes=minutes, device=device, quiet=quiet)
    _print_summary(result["summary"])
    click.echo(json.dumps({"P": round(result["summary"]["P"], 2), "J": round(result["summary"]["J"], 2)}))
    click.echo(f"outputs: {output}/summary.json, masks in {result['masks']}/, checkpoint {result['checkpoint']}")


from apps.retrieval.cli import retrieval  # noqa: E402  (coseg retrieval ...: apps/retrieval/cli.py)

main.add_command(retrieval)


if __name__ == "__main__":
    main()
