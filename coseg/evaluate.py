"""Evaluation: P and J per image at the ground truth's original resolution, per group, then over groups."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import torch
from tqdm.auto import tqdm

from coseg.atomic import atomic_path, move_atomic, remove_staging_folders, staging_folder, write_text_atomic
from coseg.data import (DataFileError, Sample, groups_sharing_images, printable, read_mask, shown_names,
                        write_png_atomic)
from coseg.data.io import fit_to_mask
from coseg.engine.run_lock import folder_lock
from coseg.inference import NON_FINITE, check_group_steps, group_ids, images_for, predict_dataset
from coseg.models import EdgeFilter, GroupColourCut, GroupRefinement, GroupStatistics, Model
from coseg.models.checkpoint import TRAINED_ON, VALIDATED_ON, PathLike, recorded_names
from coseg.predict import LOCK as PREDICT_LOCK
from coseg.predict import ONE_FILE_ERRORS, clashes, folder_clashes, output_path
from coseg.report.build import remove_report
from coseg.report.files import (PREDICTION_INDEX, PREDICTION_INDEX_COLUMNS, PREDICTIONS, cell_path, path_cell,
                                path_cells, read_csv)
from coseg.report.segmentation import is_evaluation
from coseg.scores import EmptyPolicy, ImageScore, check_empty_policy, score_image, summarize
from metric._checks import check_count


LOCK = ".evaluate.lock"
"""Held in the output folder while `coseg evaluate` writes there (:func:`evaluation_lock`)."""


@contextlib.contextmanager
def evaluation_lock(output: PathLike) -> Iterator[None]:
    """Hold :data:`LOCK` in the folder ``output`` for the block, and `coseg predict`'s (:data:`coseg.predict.LOCK`: a
    predict removes the temporary files and the report of the folder it writes): while another evaluate or a predict
    writes there, ``ValueError`` naming the folder and that process, having written nothing
    (:func:`~coseg.engine.run_lock.folder_lock`, which also removes ``output`` again if it made it and it is left
    empty)."""
    with (folder_lock(output, LOCK, "another `coseg evaluate` is writing there"),
          folder_lock(output, PREDICT_LOCK, "`coseg predict` is writing there")):
        yield


def seen_overlap(checkpoint: PathLike, evaluated: Iterable[str], samples: Iterable[Sample] = ()
                 ) -> dict[str, list[str]]:
    """Of the ``evaluated`` groups (classes), the sorted ones the model file ``checkpoint`` records it was trained
    on (key :data:`TRAINED_ON`) and validated on (:data:`VALIDATED_ON`), matched by name exactly, or, among
    ``samples`` (the evaluated data set's), holding an image file identical to one of such a group (Internet's
    ``Airplane100``, copied out of ``Airplane``: :func:`~coseg.data.groups_sharing_images`); a key is left out when
    the file does not record its names."""
    chosen = set(evaluated)
    recorded = {key: recorded_names(checkpoint, key) for key in (TRAINED_ON, VALIDATED_ON)}
    known = chosen.union(*(names for names in recorded.values() if names is not None))
    linked = groups_sharing_images(s for s in samples if s.group in known)
    overlap: dict[str, list[str]] = {}
    for key, names in recorded.items():
        if names is not None:
            copied = {linked[g] for g in names if g in linked}
            overlap[key] = sorted(g for g in chosen if g in names or linked.get(g) in copied)
    return overlap


def overlap_warnings(overlap: Mapping[str, list[str]], evaluated: int, noun: str = "groups") -> list[str]:
    """The lines warning that some of the ``evaluated`` groups (or other ``noun``) were in :func:`seen_overlap`'s
    ``overlap``: those trained on (scores not of unseen data), then, milder, the validation ones."""
    lines = []
    trained, validated = overlap.get(TRAINED_ON), overlap.get(VALIDATED_ON)
    if trained:
        lines.append(f"warning: {len(trained)} of the {evaluated} evaluated {noun} {_were(trained)} used to train this "
                     f"model ({shown_names(trained, quote=True)}): these scores are not of unseen data")
    if validated:
        lines.append(f"note: {len(validated)} of the {evaluated} evaluated {noun} {_were(validated)} this model's "
                     f"validation {noun} (used to choose its epoch): {shown_names(validated, quote=True)}")
    return lines


def _were(names: Sequence[str]) -> str:
    """The verb of "N of the M ... were": "was" for one."""
    return "was" if len(names) == 1 else "were"


@dataclass
class Evaluation:
    summary: dict
    scores: list[ImageScore]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    predicted: list[tuple[Sample, Path]] = field(default_factory=list)  # (sample, saved mask) with ``predictions``
    unsaved: list[tuple[str, str]] = field(default_factory=list)  # (image, reason): scored, its mask not saved


def evaluate_samples(model: Model, samples: Sequence[Sample], image_size: int, device: torch.device,
                     batch_size: int = 8, workers: int = 0, empty: EmptyPolicy = "exclude",
                     progress: bool = True, group_mode: bool = True,
                     refinement: Optional[GroupRefinement] = None, predictions: Optional[Path] = None,
                     flip: bool = False, edges: Optional[EdgeFilter] = None,
                     colour: Optional[GroupColourCut] = None,
                     statistics: Optional[GroupStatistics] = None) -> Evaluation:
    """Score the labelled ``samples`` against their ground truth. ``samples``: the chosen groups' images, labelled
    or not (``samples_of(scan, groups, labelled=False)``). In ``group_mode`` every image of a group with at least
    one labelled image is predicted with its group, as ``coseg predict`` does (the unlabelled ones shape the
    group's consensus, statistics, refinement and colour cut); otherwise only the labelled ones are predicted,
    alone. ``image_size``, ``refinement``, ``flip``, ``edges``, ``colour`` and ``statistics``: as in
    :func:`~coseg.inference.predict_dataset`. Each probability is resized to its image's size, thresholded at 0.5
    and scored against the ground truth (turned back to the image's stored orientation where only that fits it, and
    resized to a ground truth of the image's aspect ratio at another resolution, counted in the summary's
    ``resized``: ``fit_to_mask``). Unreadable images (labelled or not) and masks, masks of another aspect ratio,
    and images the model gives non-finite (NaN/inf) probabilities for are skipped and listed in ``skipped``. With
    ``predictions``, each scored mask is also saved as ``predictions/<group>/<image stem>.png`` (0/255,
    ground-truth size; :func:`prediction_files`) and listed in ``predicted``; the unlabelled images' masks are not
    saved (``coseg predict`` writes the same masks); a mask that cannot be saved (a file where its group's folder
    goes, a folder at its path, no permission: :data:`~coseg.predict.ONE_FILE_ERRORS`) is listed in ``unsaved``, its
    image still scored; any other write error (a full disk) stops the evaluation. The masks are written into a folder
    beside ``predictions`` (:func:`~coseg.atomic.staging_folder`) and moved in once every image is scored, the
    earlier evaluation there removed just before (:func:`_remove_earlier_evaluation`): an evaluation stopped before
    (Ctrl-C, an error) leaves the earlier one whole. A ``predictions`` folder that would put a mask among the data
    set's images or masks is refused before anything is predicted or removed."""
    check_group_steps(group_mode, refinement, statistics)  # before an earlier evaluation's index is removed
    check_empty_policy(empty)
    check_count(batch_size, 1, "batch_size")
    labelled = [s for s in samples if s.mask is not None]
    scored_groups = {s.group for s in labelled}
    inputs = [s for s in samples if s.group in scored_groups] if group_mode else labelled
    dataset = images_for([s.image for s in inputs], image_size, colour)  # checks image_size
    saved_as: dict[int, Path] = {}
    if predictions is not None:
        files = prediction_files(predictions, labelled)
        _check_outside_data(files, labelled, samples)
        saved_as = dict(zip([i for i, s in enumerate(inputs) if s.mask is not None], files))
    scores: list[ImageScore] = []
    skipped: list[tuple[str, str]] = []
    written: list[tuple[Sample, Path]] = []  # (sample, where its mask goes), the mask still in ``staged``
    predicted: list[tuple[Sample, Path]] = []
    unsaved: list[tuple[str, str]] = []
    resized = 0
    with contextlib.nullcontext() if predictions is None else staging_folder(predictions) as staged:
        bar = tqdm(total=len(inputs), desc="evaluating", unit="img", disable=not progress, leave=False)
        groups = group_ids(inputs) if group_mode else None
        for index, result in predict_dataset(model, dataset, device, batch_size, workers, original_size=True,
                                             groups=groups, refinement=refinement, flip=flip, edges=edges,
                                             colour=colour, statistics=statistics):
            bar.update(1)
            sample = inputs[index]
            if isinstance(result, str):
                if sample.mask is None:  # an unreadable one was left out of its group; a non-finite one was in it
                    result += (" (an image without ground truth)" if result.endswith(NON_FINITE) else
                               " (an image without ground truth: its group was predicted without it)")
                skipped.append((printable(sample.image), result))
                continue
            if sample.mask is None:
                continue  # predicted only as part of its group
            try:
                gt = read_mask(sample.mask, any_nonzero=sample.any_nonzero)
                fitted = fit_to_mask(result, sample.image, sample.mask, gt.shape)
                resized += sorted(fitted.shape) != sorted(result.shape)  # not merely turned back
                result = fitted
                scores.append(score_image(result, gt, sample.group, sample.image.name))
            except DataFileError as e:
                skipped.append((printable(sample.image), str(e)))
                continue
            except ValueError as e:
                skipped.append((printable(sample.image), f"{printable(sample.mask)}: {e}"))
                continue
            if index in saved_as:
                with _unless_one_file_error(saved_as[index], sample, unsaved):
                    write_png_atomic(staged / saved_as[index].relative_to(predictions), result)
                    written.append((sample, saved_as[index]))
        bar.close()
        if not scores:
            raise ValueError("no image could be evaluated: " + (f"{len(skipped)} skipped, the first {skipped[0][1]}"
                                                                if skipped else "none has a ground-truth mask"))
        if predictions is not None:
            _remove_earlier_evaluation(predictions)
            for sample, file in written:
                with _unless_one_file_error(file, sample, unsaved):
                    file.parent.mkdir(parents=True, exist_ok=True)
                    move_atomic(staged / file.relative_to(predictions), file)
                    predicted.append((sample, file))
    summary = summarize(scores, empty)
    other = "zero" if empty == "exclude" else "exclude"
    summary[f"J_empty_{other}"] = summarize(scores, other)["J"]  # type: ignore[arg-type]
    summary["skipped"] = len(skipped)
    summary["resized"] = resized
    return Evaluation(summary, scores, skipped, predicted, unsaved)


@contextlib.contextmanager
def _unless_one_file_error(file: Path, sample: Sample, unsaved: list[tuple[str, str]]) -> Iterator[None]:
    """Run the block that saves ``file``, ``sample``'s predicted mask: an error of that file alone
    (:data:`~coseg.predict.ONE_FILE_ERRORS`) is added to ``unsaved``, the block left; any other (a full disk, a
    read-only file system: no mask can be saved) is raised."""
    try:
        yield
    except OSError as e:
        if e.errno not in ONE_FILE_ERRORS:
            raise
        unsaved.append((printable(sample.image), _unsaved_reason(file, sample.image, e)))


def _unsaved_reason(file: Path, image: Path, error: OSError) -> str:
    """Why ``file``, the predicted mask of ``image``, could not be saved: ``error``'s message, naming the file in its
    way where that is one of ``file``'s folders (a file where a group's folder goes)."""
    blocking = error.filename is not None and Path(error.filename) in file.parents
    return (f"{printable(file)}, the predicted mask of {printable(image)}, could not be saved ({error.strerror}"
            + (f": {printable(Path(error.filename))}" if blocking else "") + ")")


def prediction_files(folder: Path, samples: Sequence[Sample]) -> list[Path]:
    """Where each sample's predicted mask is saved: ``folder/<group>/<image stem>.png``, or ``<image name>.png``
    where images of a group share a stem (``a.jpg``, ``a.png``) or where the stem's file would be the folder of
    another group's masks (``g/x.jpg`` and a group ``g/x.png``), so that none overwrites or blocks another."""
    files = [output_path(folder, Path(s.group) / s.image.name) for s in samples]
    for i in {i for clash in clashes(files) for i in clash} | set(folder_clashes(files)):
        files[i] = output_path(folder, Path(samples[i].group) / f"{samples[i].image.name}.png")
    return files


def _check_outside_data(files: Sequence[Path], labelled: Sequence[Sample], samples: Sequence[Sample]) -> None:
    """Refuse (``ValueError``) the saved predictions ``files`` of the ``labelled`` samples (one each) when one would
    be written in a folder of the ``samples``' images or masks (``predictions`` given as the ground-truth folder):
    it would overwrite a mask, or join the data set as an image or mask."""
    folders = {path.parent for s in samples for path in (s.image, s.mask) if path is not None}
    data = {folder.resolve() for folder in folders}
    inside = {parent for parent in {file.parent for file in files} if parent.resolve() in data}
    for sample, file in zip(labelled, files):
        if file.parent in inside:
            raise ValueError(f"{printable(file)}, the saved prediction of {printable(sample.image)}, would be written "
                             f"among the data set's images or masks (in {printable(file.parent)}): choose a "
                             "predictions folder (evaluate --report: OUTPUT/predictions) outside them")


def _finite(x: float) -> Optional[float]:
    return None if isinstance(x, float) and math.isnan(x) else round(x, 4)


def remove_earlier_predictions(predictions: Path) -> None:
    """Remove an earlier evaluation's ``predictions/index.csv`` and the saved masks it lists (PNG files inside
    ``predictions``; folders left empty go too, ``predictions`` itself included): they are not this evaluation's."""
    index = predictions / PREDICTION_INDEX
    if not index.is_file():
        return
    try:
        rows = read_csv(index, ("prediction",))[1]
    except ValueError:  # a damaged index: the masks it listed cannot be told from other files
        rows = []
    root = predictions.resolve()
    for row in rows:
        mask = (root / cell_path(row["prediction"])).resolve()
        if mask.suffix.lower() == ".png" and mask.is_relative_to(root) and mask.is_file():
            mask.unlink()
            for folder in mask.relative_to(root).parents:
                if folder != Path(".") and not any((root / folder).iterdir()):
                    (root / folder).rmdir()
    index.unlink()
    if not any(predictions.iterdir()):
        predictions.rmdir()


def _remove_earlier_evaluation(predictions: Path) -> None:
    """Before the masks of a finished evaluation are moved into ``predictions``: remove the earlier evaluation that
    :func:`write_evaluation` wrote in ``predictions``' folder, its report first (:func:`remove_report`, which a
    running `coseg report` of it refuses), then its summary.json (so that none describes other masks) and the masks
    it saved (:func:`remove_earlier_predictions`)."""
    folder = predictions.parent
    if is_evaluation(folder):
        remove_report(folder)  # first: refused while a `coseg report` writes it, the earlier evaluation is whole
        (folder / "summary.json").unlink()
    remove_earlier_predictions(predictions)


def write_evaluation(evaluation: Evaluation, output: Path) -> None:
    """``output/summary.json`` (percent; NaN written as null) and ``output/per_image.csv`` (percent), each
    atomically; with saved predictions also ``output/predictions/index.csv`` (which files each saved mask belongs
    to, read by the report); without them an earlier evaluation's report (report.html and its PNG folder; first, and
    while a `coseg report` writes it ``ValueError``, nothing written: :func:`remove_report`), index.csv and the masks
    it lists are removed, and so are the masks a killed one left staged
    (:func:`~coseg.atomic.remove_staging_folders`). summary.json is written last, and an earlier one is removed once
    the new per_image.csv is ready to replace the old: where summary.json is, per_image.csv and index.csv beside it
    are of the same evaluation (an interrupted write leaves the old set whole, or no summary.json). `coseg evaluate`
    holds :func:`evaluation_lock` of ``output`` around the evaluation and this, so that no other run writes there."""
    if not evaluation.predicted:  # first: refused while a `coseg report` writes it, the earlier evaluation is whole
        remove_report(output)
    s = evaluation.summary
    summary = {
        "P": _finite(s["P"]), "J": _finite(s["J"]),
        "per_group": {printable(g): {k: _finite(v) if isinstance(v, float) else v for k, v in d.items()}
                      for g, d in s["per_group"].items()},
        **{k: (_finite(v) if isinstance(v, float) else v) for k, v in s.items() if k not in ("P", "J", "per_group")},
        "skipped_files": [{"file": f, "reason": r} for f, r in evaluation.skipped],
        "unsaved_predictions": [{"file": f, "reason": r} for f, r in evaluation.unsaved],
    }
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["group", "image", "P", "J", "empty_gt"])
    for sc in evaluation.scores:
        writer.writerow([printable(sc.group), printable(sc.name), f"{100 * sc.P:.4f}",
                         "" if math.isnan(sc.J) else f"{100 * sc.J:.4f}", int(sc.empty_gt)])
    with atomic_path(output / "per_image.csv") as tmp:
        tmp.write_bytes(buf.getvalue().encode("utf-8"))
        (output / "summary.json").unlink(missing_ok=True)  # it would describe the old per_image.csv
    if evaluation.predicted:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(PREDICTION_INDEX_COLUMNS)
        folder = (output / PREDICTIONS).resolve()
        for sample, saved in evaluation.predicted:
            writer.writerow([printable(sample.group), printable(sample.image.name), *path_cells(sample.image, folder),
                             *path_cells(sample.mask, folder), int(sample.any_nonzero),  # type: ignore[arg-type]
                             path_cell(os.path.relpath(saved.resolve(), folder))])
        write_text_atomic(output / PREDICTIONS / PREDICTION_INDEX, buf.getvalue())
    else:  # masks left by an earlier evaluate --report (or a killed one) are not this evaluation's
        remove_earlier_predictions(output / PREDICTIONS)
        remove_staging_folders(output / PREDICTIONS)
    write_text_atomic(output / "summary.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
