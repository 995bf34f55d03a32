"""The ``coseg`` command: thin click wrappers around library functions."""
from __future__ import annotations

import functools
import importlib
import json
import math
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import click

from apps.options import (NAMES_FILE_HELP, ModelFile, OutputFolder, UserPath, batch_size_option, check_report_only,
                          checkpoint_option, device_option, echo, echo_report, image_size_option, known_layout,
                          masks_option, name_list, not_training_state, quiet_option, report_options, training_config,
                          training_options, workers_option)
from coseg.config import EDGE_EPS, EDGE_RADIUS, MAX_COLOUR_SCALE


def error_message(error: BaseException) -> str:
    """An error's own message: a KeyError's without the quotes ``str`` adds, the OS's errors as "problem: file", a
    click error's as click shows it after "Error:", a DataLoader worker's without the traceback torch adds
    (:func:`~coseg.engine.trainer.worker_error`)."""
    from coseg.data import printable
    from coseg.engine.trainer import worker_error

    error = worker_error(error) or error
    if isinstance(error, click.ClickException):
        return error.format_message()
    if isinstance(error, KeyError) and len(error.args) == 1:
        return str(error.args[0])
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        return f"{error.strerror}: {printable(error.filename)}"
    return str(error)


class ToldError(click.ClickException):
    """An expected failure of a command, its message as this process tells it (:func:`told`): exit code 1."""


class OptionError(ToldError):
    """An option or config-file value the run cannot take, found past click's own checks: exit code 2, as click's
    usage errors."""

    exit_code = 2


class Interrupted(click.ClickException):
    """Ctrl-C: one line telling what the interrupted command kept, exit code 130 (128 + SIGINT), as shells expect."""

    exit_code = 130


# What an interrupted command leaves, by the name of its function (``coseg train`` and ``coseg retrieval train``
# alike); the others write their results only at the end.
KEPT_WHEN_INTERRUPTED = {
    "train": "the run keeps the checkpoint of its last finished epoch, if one finished (last.pt): the same "
             "command with --resume continues it",
    "predict": "the masks already written are kept: the same command again predicts the rest",
    "export": "the finished shards are kept: the same command again exports the rest",
    "demo": "--output keeps what the demo wrote: its generated data/ (the next demo reuses it once complete), its "
            "training run/ as far as it got (the next demo trains anew) and, after training, the scores, masks and "
            "overlays written so far",
    "evaluate": "summary.json, written last, is there only if the scores were all written; a report cut short is "
                "written again by `coseg report` on --output",
}


def friendly_errors(fn: Callable) -> Callable:
    """Show expected failures (bad input, bad config, unsafe checkpoint) and Ctrl-C as one clear line, not a
    traceback or click's bare "Aborted!"; a bad option or config value (``ConfigError``) exits with code 2, as click's
    usage errors, Ctrl-C with 130, the others with 1. Under torchrun an error every process meets is told once, by
    rank 0 (:func:`told`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from coseg.data import DataFileError
        from coseg.engine import CheckpointError, ConfigError, NonFiniteLossError
        from coseg.engine.distributed import launched_rank

        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            if launched_rank():  # torchrun passes the signal on to every process: rank 0 tells it
                raise click.exceptions.Exit(Interrupted.exit_code) from None
            kept = KEPT_WHEN_INTERRUPTED.get(fn.__name__)
            raise Interrupted(f"interrupted; {kept}" if kept else "interrupted before it wrote its results") from None
        except ConfigError as e:
            raise OptionError(told(e)) from None
        except (ValueError, KeyError, DataFileError, CheckpointError, NonFiniteLossError, OSError) as e:
            raise ToldError(told(e)) from None

    return wrapper


def told(error: BaseException) -> str:
    """``error``'s message as this process tells it: after :func:`~coseg.engine.distributed.error_prefix`, so that
    under torchrun a process other than rank 0 tells only what rank 0 does not (naming the process); Ctrl-C while it
    waits ends it silently, as rank 0 tells that."""
    from coseg.engine.distributed import error_prefix

    try:
        prefix = error_prefix()
    except KeyboardInterrupt:
        raise click.exceptions.Exit(Interrupted.exit_code) from None
    return prefix + error_message(error)


@contextmanager
def click_errors_told() -> Iterator[None]:
    """Tell click's errors raised in the block (a bad option value, an unknown option, a missing argument) as
    :func:`friendly_errors` tells the commands' own: under torchrun, a process other than rank 0 holds its error and
    then shows it naming the process, keeping click's usage line, help hint and exit code. Rank 0 and a single process
    let click show them as always."""
    try:
        yield
    except click.ClickException as e:
        from coseg.engine.distributed import launched_rank  # torch: not for a command line without errors

        if isinstance(e, ToldError) or not launched_rank():
            raise
        message = told(e)
        e.format_message = lambda: message  # what click's show() prints after "Error:" (and any usage line)
        raise


class CosegGroup(click.Group):
    """The ``coseg`` command group: click's errors, met reading the command line before a command runs or raised by
    a command itself, are told as the commands' own errors are (:func:`click_errors_told`)."""

    def make_context(self, info_name: Optional[str], args: list[str], parent: Optional[click.Context] = None,
                     **extra: Any) -> click.Context:
        with click_errors_told():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with click_errors_told():
            return super().invoke(ctx)


class LazyGroup(click.Group):
    """A command group whose commands are a sequence ``commands_of`` (``module:NAME``), imported when they are first
    needed (listed, looked up, run): the retrieval commands import timm and torchvision, seconds that ``coseg --help``
    and the other commands need not wait for. Ctrl-C during that import is told as during a command."""

    def __init__(self, *args: Any, commands_of: str, **kwargs: Any) -> None:
        self.commands_of: Optional[str] = commands_of
        super().__init__(*args, **kwargs)

    @property
    def commands(self) -> dict[str, click.Command]:  # type: ignore[override]
        if self.commands_of is not None:
            module, name = self.commands_of.split(":")
            try:
                commands = getattr(importlib.import_module(module), name)
            except KeyboardInterrupt:
                raise Interrupted("interrupted before it wrote its results") from None
            self.commands_of = None
            self._commands.update((command.name, command) for command in commands)
        return self._commands

    @commands.setter
    def commands(self, commands: dict[str, click.Command]) -> None:
        self._commands = commands


def finite(ctx: click.Context, param: click.Parameter, value: Optional[float]) -> Optional[float]:
    """Option callback refusing NaN and infinity, which click's ``FloatRange`` lets through."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def echo_skipped(what: str, lines: list[str]) -> None:
    """Tell what a run left out, one file per line (names printable even when not UTF-8)."""
    if lines:
        echo(f"skipped {len(lines)} {what}:")
        for line in lines:
            echo(f"  {line}")


def echo_problems(problems: Iterable[Any]) -> None:
    """Tell a scan's problems (``coseg.data.Problem``): its notes on how files were read (``NOTE_KINDS``, e.g.
    masks paired by a suffix) as ``note:`` lines, then the files and folders it left out."""
    from coseg.data import NOTE_KINDS

    problems = list(problems)
    for problem in problems:
        if problem.kind in NOTE_KINDS:
            echo(f"note: {problem}")
    echo_skipped("unpaired file(s) or folder(s)", [str(p) for p in problems if p.kind not in NOTE_KINDS])


def _refinement(iterations: int, weight: float):
    from coseg.models import GroupRefinement

    return GroupRefinement(iterations, weight) if iterations else None


def _edges(radius: float, eps: float):
    from coseg.models import EdgeFilter

    return EdgeFilter(radius, eps) if radius else None


def _colour(enabled: bool, iterations: int, scale: float):
    from coseg.models import GroupColourCut

    return GroupColourCut(iterations, scale=scale) if enabled else None


def _statistics(strength: Optional[float]):
    from coseg.models import GroupStatistics

    return None if strength is None else GroupStatistics(strength)


def _device(name: str):
    from coseg.engine import resolve_device

    return resolve_device(name)


def _model(checkpoint: Path, device: Any, image_size: Optional[int]) -> tuple[Any, int]:
    """The model of ``checkpoint`` for inference and its input size: ``--image-size`` if given (a usage error naming
    the option when the model cannot take it), else the size it was trained at."""
    from coseg.checkpoints import load_for_inference
    from coseg.data import printable

    model, size = load_for_inference(checkpoint, device)
    if image_size is not None and image_size % model.output_stride:
        raise click.BadParameter(f"{image_size} is not a multiple of {model.output_stride}, which the model of "
                                 f"{printable(checkpoint)} needs (its own size: {size})", param_hint="'--image-size'")
    return model, image_size or size


def inference_options(fn: Callable) -> Callable:
    """The options evaluate and predict share: group mode, refinement, group statistics, flip, edge filter,
    colour cut, image size, batch size, device, workers, quiet."""
    for option in reversed([
        click.option("--group-mode/--single-image", default=True, show_default=True,
                     help="Predict each group's images together (sub-folders are groups) or every image alone."),
        click.option("--refine-iterations", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Group refinement through the pixel embeddings: rounds of prototype updates "
                          "(0 = off; group mode)."),
        click.option("--refine-weight", type=click.FloatRange(min=0), default=2.0, show_default=True, callback=finite,
                     help="Logit weight of the refinement score."),
        click.option("--group-statistics", type=click.FloatRange(0, None), default=None, callback=finite,
                     help="Adapt the BatchNorm statistics to each group before predicting it (AdaBN): blend of the "
                          "training statistics, counted as this many images, and the group's own (one more model "
                          "pass per group; group mode; e.g. 8). Off by default: on iCoseg it lowered the validation J "
                          "of the default inference on every model tried (docs/icoseg_experiments.md)."),
        click.option("--flip", is_flag=True, help="Test-time augmentation: average each prediction with that of the "
                                                  "mirrored image (twice the model time)."),
        click.option("--edge-radius", default=EDGE_RADIUS, show_default=True,
                     type=click.FloatRange(0, 1), callback=finite,
                     help="Edge-aware refinement: guided-filter each mask by its image so boundaries follow image "
                          "edges; window radius as a fraction of the image side (0 = off)."),
        click.option("--edge-eps", default=EDGE_EPS, show_default=True,
                     type=click.FloatRange(0, None, min_open=True), callback=finite,
                     help="Edge filter regularisation (squared intensity, images in [0, 1]): larger lets only strong "
                          "edges move the mask."),
        click.option("--colour-cut/--no-colour-cut", default=True, show_default=True,
                     help="Cut each group's masks again with foreground/background colour models learnt from the "
                          "confident pixels of the whole group (GrabCut; each image alone with --single-image). "
                          "+1.8 to +5.2 J on iCoseg's test8, more on validation (docs/icoseg_experiments.md), for ~4x "
                          "the inference time on a CPU."),
        click.option("--colour-iterations", default=3, show_default=True, type=click.IntRange(1, None),
                     help="GrabCut rounds fitting the group's colour models (with --colour-cut)."),
        click.option("--colour-scale", default=1.5, show_default=True, type=click.FloatRange(1, MAX_COLOUR_SCALE),
                     callback=finite,
                     help="The colour cut runs on the images at this many times the model's input side (the masks "
                          "upsampled to it), so thin parts lost at the model's resolution can come back (with "
                          "--colour-cut; 1 = at the model's input size)."),
        image_size_option, batch_size_option(8), device_option, workers_option, quiet_option,
    ]):
        fn = option(fn)
    return fn


@click.group(cls=CosegGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="coseg-metric", prog_name="coseg")
def main() -> None:
    """Image co-segmentation and retrieval with metric-learning heads."""


from coseg.config import CosegTrainConfig  # noqa: E402  (options are generated from the config's fields)


@main.command(context_settings={"show_default": False})
@training_options(CosegTrainConfig)
@friendly_errors
def train(config_file: Optional[Path], resume: bool, **params: Any) -> None:
    """Train a co-segmentation model: by default an ensemble of three (--members). Writes OUTPUT/config.yaml,
    best.* and last.* (the ensemble), and each member's run (log.csv, last.*, best.*) in OUTPUT/member<i>/; with
    --members 1 the run's files are in OUTPUT itself."""
    from coseg.train import train as run_training

    cfg = training_config(CosegTrainConfig, config_file, params, resume)
    result = run_training(cfg, resume=resume)
    if not result.is_main:  # under torchrun one process tells
        return
    for i, member in enumerate(result.members):
        _echo_fit(member, f"member {i}: ", len(result.val_groups))
    if result.members:
        fit = result.fit
        echo(f"ensemble of {len(result.members)} models, {fit.seconds / 60:.1f} min in all"
             + (f": validation J {fit.best_metric:.2f}" if fit.best_metric is not None else ""))
    else:
        _echo_fit(result.fit, "", len(result.val_groups))
    from coseg.data import printable

    if result.val_groups:  # carved by the run: evaluate on groups it never saw, not on these
        shown = [printable(g) for g in result.val_groups[:MAX_GROUPS_SHOWN]]
        echo(f"validation group(s): {', '.join(shown)}"
             + (f", … ({len(result.val_groups)} in all)" if len(result.val_groups) > len(shown) else ""))
        if result.fit.best_metric is None:  # J is undefined on empty ground truth: no epoch could be chosen on it
            echo("warning: every validation mask is empty, so validation has no J to choose the best epoch on: "
                 "best.safetensors is the last epoch's model (choose validation groups with foreground)")
    elif cfg.val_fraction and not cfg.val_groups:  # a single training group: none could be held out
        echo(f"no validation: the only training group cannot be held out (--val-fraction {cfg.val_fraction}), so "
             "best.safetensors is the last epoch's model")
    echo_skipped("file(s) that could not be used", [f"{printable(p)}: {r}" for p, r in result.skipped])
    echo_problems(result.problems)
    echo(f"outputs: {result.output}/ (best.safetensors, last.safetensors, "
         + ("member<i>/, " if result.members else "log.csv, ") + "config.yaml)")


MAX_GROUPS_SHOWN = 10  # validation groups named after training


def fit_summary(fit: Any, lengths: tuple[str, str] = ("--epochs", "--minutes")) -> str:
    """What a training session did: its epochs, time and training speed (``FitResult.images_per_s``), or that a
    resumed run had nothing left to train and which of the options ``lengths`` (its epochs, its time budget) trains it
    on: both when it had reached its epochs and its budget."""
    if not fit.history:
        epochs_reached = fit.max_epochs is not None and fit.epochs_run >= fit.max_epochs
        longer = [lengths[0]] * (epochs_reached or not fit.stopped_by_time) + [lengths[1]] * fit.stopped_by_time
        return (f"nothing left to train: the run had reached epoch {fit.epochs_run}"
                + (" and its time budget" if fit.stopped_by_time else "")
                + f" (a larger {' and '.join(longer)} train{'' if longer[1:] else 's'} on)")
    first = fit.history[0]["epoch"]
    if first == 1:
        trained = f"trained {fit.epochs_run} epoch(s) in {fit.seconds / 60:.1f} min"
    else:  # a resumed run: this session's epochs; its time counts the earlier sessions'
        epochs = f"epoch {first}" if first == fit.epochs_run else f"epochs {first} to {fit.epochs_run}"
        trained = f"trained {epochs}, {fit.seconds / 60:.1f} min with the earlier ones"
    return (f"{trained} (training: {fit.images_per_s:.1f} images/s, validation left out)"
            + (" — stopped by the time budget" if fit.stopped_by_time else ""))


def _echo_fit(fit: Any, prefix: str, val_groups: int) -> None:
    echo(f"{prefix}{fit_summary(fit)}")
    if fit.best_metric is not None:
        echo(f"{prefix}best validation J {fit.best_metric:.2f} at epoch {fit.best_epoch} "
             f"({val_groups} held-out group(s))")


@main.command()
@checkpoint_option
@click.option("--data", required=True, type=UserPath(exists=True, file_okay=False, path_type=Path),
              help="Data set root.")
@masks_option
@click.option("--layout", default="auto", show_default=True, callback=known_layout("coseg.data.layouts:LAYOUTS"),
              help="icoseg, internet, sbcoseg, folders or auto.")
@click.option("--output", required=True, type=OutputFolder(path_type=Path),
              help="Folder for summary.json and per_image.csv.")
@click.option("--splits", type=UserPath(exists=True, dir_okay=False),
              help="Splits JSON (default: DATA/splits.json if it exists).")
@click.option("--split", help="Key of the group list to evaluate in the splits file (e.g. test8). Default: all groups.")
@click.option("--groups", callback=name_list,
              help=f"Explicit comma-separated groups to evaluate (instead of --split). {NAMES_FILE_HELP}")
@click.option("--empty", type=click.Choice(["exclude", "zero"]), default="exclude", show_default=True,
              help="Images with an empty ground truth: leave them out of J, or count their J as 0 (both are saved).")
@inference_options
@report_options("scores worst first, image | ground truth | prediction per group (the predicted masks are saved "
                "in OUTPUT/predictions/), and the training curves and config of the checkpoint's run")
@friendly_errors
def evaluate(checkpoint: Path, data: Path, masks: Optional[Path], layout: str, output: Path, splits: Optional[str],
             split: Optional[str], groups: Optional[list[str]], image_size: Optional[int], batch_size: int, empty: str,
             group_mode: bool, refine_iterations: int, refine_weight: float, group_statistics: Optional[float],
             flip: bool, edge_radius: float, edge_eps: float, colour_cut: bool, colour_iterations: int,
             colour_scale: float, device: str, workers: int, quiet: bool, report: bool, thumbnail: int) -> None:
    """Score a model on a labelled data set: P and J (percent) at the ground truth's resolution, averaged per
    group, then over groups."""
    from coseg.data import find_samples, printable, shown_names
    from coseg.evaluate import evaluate_samples, evaluation_lock, overlap_warnings, seen_overlap, write_evaluation
    from coseg.predict import mask_settings
    from coseg.report.files import PREDICTIONS, check_report_outside, record_model_file, record_path
    from coseg.selection import (check_group_choice, choose_groups, default_splits_file, groups_without_masks,
                                 nothing_labelled, problems_of, samples_of)

    check_report_only(report, "thumbnail")
    explicit = groups or []
    check_group_choice(explicit, split, splits, "groups to evaluate", ("--groups", "--split", "--splits"))
    if report:
        check_report_outside(output, data)
    with evaluation_lock(output):  # before the model is loaded: another evaluate or a predict there is refused
        dev = _device(device)
        model, size = _model(checkpoint, dev, image_size)
        scan = find_samples(data, layout, masks)
        chosen = choose_groups(scan, default_splits_file(data, splits), split, explicit)
        if not scan.labelled:
            raise ValueError(nothing_labelled(data, layout, scan, problems_of(scan, chosen), "evaluate"))
        labelled = {s.group for s in scan.labelled}
        unscored = [printable(g) for g in chosen if g not in labelled]
        if len(unscored) == len(chosen):
            raise ValueError(f"none of the {len(chosen)} chosen group(s) has a ground-truth mask "
                             f"({shown_names(unscored)}; {scan.layout} layout), so there is nothing to evaluate")
        refinement, edges = _refinement(refine_iterations, refine_weight), _edges(edge_radius, edge_eps)
        colour, statistics = _colour(colour_cut, colour_iterations, colour_scale), _statistics(group_statistics)
        evaluation = evaluate_samples(model, samples_of(scan, chosen, labelled=False), size, dev, batch_size, workers,
                                      empty,  # type: ignore[arg-type]
                                      progress=not quiet, group_mode=group_mode, refinement=refinement,
                                      predictions=output / PREDICTIONS if report else None, flip=flip, edges=edges,
                                      colour=colour, statistics=statistics)
        overlap = seen_overlap(checkpoint, evaluation.summary["per_group"], scan.samples)
        evaluation.summary.update({key: len(names) for key, names in overlap.items()})
        if unscored:
            evaluation.summary["unscored_groups"] = unscored
        record_model_file(evaluation.summary, checkpoint, output)
        for key, path in (("data", data), ("masks", masks)):  # what was scored, and how
            if path is not None:
                record_path(evaluation.summary, key, path, output)
        evaluation.summary.update({"layout": scan.layout, "split": split and printable(split),
                                   "groups": [printable(g) for g in explicit] or None,
                                   "settings": mask_settings(size, group_mode, refinement, flip, edges, colour,
                                                             statistics)})
        write_evaluation(evaluation, output)
        if unscored:
            has = "has" if len(unscored) == 1 else "have"
            echo(f"warning: {len(unscored)} of the {len(chosen)} chosen groups {has} no ground-truth mask, so they are "
                 f"not scored and the means are over the others: {', '.join(unscored)}")
        for line in overlap_warnings(overlap, len(evaluation.summary["per_group"])):
            echo(line)
        _print_summary(evaluation.summary)
        if evaluation.summary["resized"]:
            echo(f"note: {evaluation.summary['resized']} ground-truth mask(s) saved at another resolution than their "
                 "image: scored at theirs, the predictions resized to them")
        echo_skipped("file(s) that could not be used", [reason for _, reason in evaluation.skipped])
        if evaluation.unsaved:
            echo(f"could not save {len(evaluation.unsaved)} predicted mask(s) (their images are scored; the report "
                 "shows no prediction for them):")
            for _, reason in evaluation.unsaved:
                echo(f"  {reason}")
        echo_problems([*groups_without_masks(scan, explicit, split), *problems_of(scan, chosen)])
        echo(f"outputs: {output}/summary.json, {output}/per_image.csv"
             + (f", predicted masks in {output}/{PREDICTIONS}/" if report else ""))
        if report:
            _report(output, thumbnail, quiet)


def _report(folder: Path, thumbnail: int, quiet: bool) -> None:
    from coseg.report.build import build_report

    echo_report(build_report(folder, thumbnail=thumbnail, progress=not quiet))


def _columns(text: str) -> int:
    """The terminal columns ``text`` takes: none for a combining accent (a name written by macOS: ``e`` + accent), two
    for a wide character (CJK)."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _print_summary(summary: dict) -> None:
    from coseg.data import printable

    names = {g: printable(g) for g in summary["per_group"]}
    width = max([_columns(name) for name in names.values()] + [5])
    echo(f"{'group':<{width}}  {'P':>6}  {'J':>6}  images")
    for g, d in sorted(summary["per_group"].items(), key=lambda kv: names[kv[0]]):
        padding = " " * (width - _columns(names[g]))
        echo(f"{names[g]}{padding}  {d['P']:6.2f}  {d['J']:6.2f}  {d['images']}")
    echo(f"{'mean':<{width}}  {summary['P']:6.2f}  {summary['J']:6.2f}  {summary['images']} "
         f"(empty ground truth: {summary['empty']}, {summary['empty_gt_images']} image(s))")


@main.command()
@checkpoint_option
@click.option("--input", "input_dir", required=True, type=UserPath(exists=True, file_okay=False, path_type=Path),
              help="Folder of images; each subfolder is a group, a flat folder is one group.")
@click.option("--output", required=True, type=OutputFolder(path_type=Path),
              help="Folder for the masks: OUTPUT/<same relative path>.png (0/255, at each input's size).")
@click.option("--overlays", type=OutputFolder(path_type=Path),
              help="Also write image overlays (foreground tinted red) to this folder, same relative paths.")
@click.option("--overwrite", is_flag=True, help="Predict again masks that already exist (default: keep them, so an "
              "interrupted run resumes; a run with another model, input or mask-changing option is refused).")
@inference_options
@report_options("image | prediction per group and every image's foreground share")
@friendly_errors
def predict(checkpoint: Path, input_dir: Path, output: Path, overlays: Optional[Path], image_size: Optional[int],
            batch_size: int, overwrite: bool, group_mode: bool, refine_iterations: int, refine_weight: float,
            group_statistics: Optional[float], flip: bool, edge_radius: float, edge_eps: float, colour_cut: bool,
            colour_iterations: int, colour_scale: float, device: str, workers: int, quiet: bool, report: bool,
            thumbnail: int) -> None:
    """Segment every image under INPUT and write its mask; unreadable files are skipped and listed. OUTPUT/predict.json
    records the input, the model file and the options that change the masks."""
    from coseg.data import printable
    from coseg.predict import predict_folder
    from coseg.report.build import REPORT_NAME, files_folder, remove_report

    check_report_only(report, "thumbnail")
    named_like_report = [name for name in (REPORT_NAME, files_folder(Path(REPORT_NAME)).name)
                         if (input_dir / name).exists()]
    if report and named_like_report:
        raise click.UsageError(f"{input_dir} has a sub-folder named {named_like_report[0]}, where --report would put "
                               "its page or images among the masks; predict without --report")
    dev = _device(device)
    model, size = _model(checkpoint, dev, image_size)
    result = predict_folder(model, size, input_dir, output, dev, batch_size, workers, overlays, overwrite,
                            progress=not quiet, group_mode=group_mode,
                            refinement=_refinement(refine_iterations, refine_weight), flip=flip,
                            edges=_edges(edge_radius, edge_eps),
                            colour=_colour(colour_cut, colour_iterations, colour_scale),
                            statistics=_statistics(group_statistics), checkpoint=checkpoint,
                            # an earlier run's report would show other masks; --report writes a new one
                            before_write=None if report or named_like_report else remove_report)
    echo_skipped("file(s) or folder(s)", [reason for _, reason in result.skipped])
    if not result.written and not result.already_done:  # every image skipped: a script must not take it for done
        raise click.ClickException(f"no mask written: none of the images under {printable(input_dir)} could be "
                                   "predicted (the reasons are listed above)")
    echo(f"wrote {result.written} mask(s)" + (f", kept {result.already_done} already done"
                                               if result.already_done else ""))
    echo(f"outputs: masks in {output}/" + (f", overlays in {overlays}/" if overlays else ""))
    if report:
        _report(output, thumbnail, quiet)


@main.command()
@click.option("--data", required=True, type=UserPath(exists=True, file_okay=False, path_type=Path),
              help="Data set root.")
@masks_option
@click.option("--layout", default="auto", show_default=True, callback=known_layout("coseg.data.layouts:LAYOUTS"),
              help="icoseg, internet, sbcoseg, folders or auto.")
@click.option("--output", type=UserPath(dir_okay=False, path_type=Path),
              help="The splits JSON to write [default: DATA/splits.json]; an existing file is never replaced.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              callback=finite, show_default=True,
              help="Share of the groups (of each subset, where groups have one) held out for testing.")
@click.option("--seed", default=0, show_default=True, help="Seed of the draw.")
@friendly_errors
def split(data: Path, masks: Optional[Path], layout: str, output: Optional[Path], test_fraction: float,
          seed: int) -> None:
    """Write a train/test split of DATA's labelled groups, for data sets without an official one (SBCoseg: by
    group, stratified by subset), to use with `train --train-split train` and `evaluate --split test`."""
    from coseg.atomic import write_text_atomic
    from coseg.data import find_samples, groups_sharing_images, printable, train_test_split
    from coseg.selection import nothing_labelled

    output = output or data / "splits.json"
    exists = f"{printable(output)} exists; choose another --output (it is never replaced)"
    if output.is_symlink() or output.exists():
        raise ValueError(exists)
    scan = find_samples(data, layout, masks)
    if not scan.labelled:  # as train and evaluate say it, with the first unpaired file (did you mean X/SBCoseg?)
        raise ValueError(nothing_labelled(data, layout, scan, scan.problems, "split"))
    labelled = {s.group for s in scan.labelled}
    subsets = {g: s for g, s in scan.group_subsets().items() if g in labelled}
    if len(subsets) < 2:
        raise ValueError(f"{printable(data)} has {len(subsets)} group(s) with masks; a split needs at least 2")
    splits = train_test_split(subsets, test_fraction, seed, groups_sharing_images(scan.labelled))
    try:
        write_text_atomic(output, json.dumps(splits, indent=1) + "\n", replace=False)
    except FileExistsError as e:
        if e.filename != str(output):  # a file where one of its folders goes
            raise
        raise ValueError(exists) from None  # made by another process while the groups were read
    echo(f"wrote {output}: {len(splits['train'])} training and {len(splits['test'])} test group(s) "
         f"({scan.layout} layout, seed {seed})")
    echo_skipped("group(s) without masks", [printable(g) for g in scan.groups if g not in labelled])
    echo_problems(scan.problems)


@main.command()
@click.argument("models", nargs=-1, required=True, type=ModelFile(), callback=not_training_state)
@click.option("--output", required=True, type=UserPath(dir_okay=False, path_type=Path),
              help="The ensemble's model file (.safetensors), for evaluate and predict like any other.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --output file (default: refuse).")
@friendly_errors
def ensemble(models: tuple[Path, ...], output: Path, overwrite: bool) -> None:
    """Join model files (e.g. runs with different seeds) into one ensemble, whose prediction is the mean of their
    foreground probabilities. They must have been trained at the same image size."""
    from coseg.data import printable
    from coseg.models import load_ensemble
    from coseg.models.checkpoint import TRAINING_STATE
    from coseg.models.ensemble import seen_by_members

    if output.name == TRAINING_STATE:  # the model file would be refused by every command, a run's state replaced
        raise click.BadParameter(f"{TRAINING_STATE} is the name of a run's training state (what --resume continues "
                                 "from), which no command takes as a model file: name the ensemble's file "
                                 "*.safetensors", param_hint="'--output'")
    if output.exists() and not overwrite:
        raise ValueError(f"{printable(output)} exists; --overwrite replaces it, or choose another --output")
    if any(output.resolve() == model.resolve() for model in models):
        raise ValueError(f"{printable(output)} is one of the models joined: choose another --output (the ensemble "
                         "would replace its own member)")
    joined, size = load_ensemble(models)
    joined.save(output, {**({} if size is None else {"image_size": str(size)}), **seen_by_members(models)})
    echo(f"wrote {output}: an ensemble of {len(joined.members)} model(s)")


@main.command()
@click.argument("run_dir", type=UserPath(exists=True, file_okay=False, path_type=Path))
@click.option("--output", type=UserPath(dir_okay=False, path_type=Path),
              help="The HTML file to write [default: RUN_DIR/report.html]; its PNGs go to <name>_files/ beside it.")
@click.option("--per-group", type=click.IntRange(min=1), default=12, show_default=True,
              help="Images shown per group (the worst ones when scores exist); the tables list every image.")
@click.option("--thumbnail", type=click.IntRange(min=1), default=160, show_default=True,
              help="Thumbnails: longer side in pixels.")
@quiet_option
@friendly_errors
def report(run_dir: Path, output: Optional[Path], per_group: int, thumbnail: int, quiet: bool) -> None:
    """Write a static HTML report (opens offline; relative links to PNGs written beside it) of RUN_DIR and its
    immediate sub-folders. RUN_DIR can be:

    \b
    - a training run (`coseg train` / `coseg retrieval train` --output: log.csv, config.yaml):
      loss and validation curves per epoch, the epoch table, the config;
    - a `coseg evaluate` output (summary.json, per_image.csv): P/J per group and per image,
      sortable, worst first; with `evaluate --report` (predicted masks in predictions/) also
      image | ground truth | prediction grids, and the curves and config of the checkpoint's run;
    - a `coseg retrieval evaluate` output (summary.json): R@K, MAP@R, NMI; with `--report`
      (neighbours.csv, recall_at_k.csv) also the R@K curve, queries with their nearest neighbours
      (distance, right/wrong);
    - a `coseg predict` output (predict.json beside the masks): image | prediction grids.

    A run folder holding its evaluations (e.g. runs/mine/eval_test8/) gives one report of all of them."""
    from coseg.report.build import build_report

    echo_report(build_report(run_dir, output, per_group, thumbnail, progress=not quiet))


DEMO_MARK = ".coseg-demo"
"""The empty file a demo writes first into its ``--output``: a folder holding it is a demo's, which the next demo
replaces; any other folder with files in it is refused (its data/ would take the generated images, its run/ be
replaced)."""


@main.command()
@click.option("--output", default="demo_out", show_default=True, type=OutputFolder(path_type=Path),
              help="Folder for the generated data (data/), the run (run/), the masks and overlays of the unseen "
                   "groups, summary.json, per_image.csv and report.html; a demo already there is replaced, a folder "
                   "holding anything else is refused.")
@click.option("--minutes", default=3.0, show_default=True, type=click.FloatRange(0, None, min_open=True),
              callback=finite, help="Training time budget in minutes, shared by the ensemble's three models.")
@device_option
@quiet_option
@friendly_errors
def demo(output: Path, minutes: float, device: str, quiet: bool) -> None:
    """Run the whole pipeline on a generated co-segmentation set (no data, no network): train from the
    ImageNet encoder, predict the held-out groups, evaluate, print P/J, write OUTPUT/report.html."""
    from coseg.data import printable
    from coseg.demo import run_demo

    found = sorted(p.name for p in output.iterdir()) if output.is_dir() else []
    if found and not (output / DEMO_MARK).is_file():
        raise ValueError(f"{printable(output)} holds files that are not a demo's ({printable(', '.join(found[:3]))}"
                         f"{', ...' if found[3:] else ''}): the demo writes its data/ and run/ there, replacing what "
                         "they hold; choose a new or empty --output (a demo of an older version, without "
                         f"{DEMO_MARK}: remove it)")
    output.mkdir(parents=True, exist_ok=True)
    (output / DEMO_MARK).touch()
    result = run_demo(output, minutes=minutes, device=device, quiet=quiet)
    _print_summary(result["summary"])
    echo(json.dumps({"P": round(result["summary"]["P"], 2), "J": round(result["summary"]["J"], 2)}))
    echo(f"outputs: {output}/summary.json, {output}/per_image.csv, masks in {result['masks']}/, overlays in "
         f"{output}/overlays/, checkpoint {result['checkpoint']}")
    _report(output, 160, quiet)


@main.group(cls=LazyGroup, commands_of="apps.retrieval.cli:COMMANDS",
            context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def retrieval() -> None:
    """Image retrieval: train embeddings, evaluate them, export a collection, search it."""


if __name__ == "__main__":
    main()
