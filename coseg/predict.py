"""``coseg predict``: masks for a folder of images (subfolders = groups), at each image's own size."""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import sys
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from coseg.atomic import (
    file_digest, is_temporary, remove_temporaries_of, write_bytes_atomic, write_bytes_if_changed, write_text_atomic,
)
from coseg.data import (
    DataFileError, Sample, Scan, detect_layout, encode_png, find_samples, printable, read_image, shown_names,
)
from coseg.data.layouts import data_set_in_subfolder
from coseg.engine.run_lock import folder_lock
from coseg.inference import check_group_steps, group_ids, images_for, predict_dataset, spare_cpu
from coseg.models import EdgeFilter, GroupColourCut, GroupRefinement, GroupStatistics, Model
from coseg.report.files import PREDICT_RECORD, read_json, record_model_file, record_path, recorded_paths
from metric.threads import single_threaded_pool


@dataclass
class PredictReport:
    output: Path
    written: int = 0  # masks written
    already_done: int = 0  # masks kept as they were
    skipped: list[tuple[str, str]] = field(default_factory=list)
    predicted: Counter[str] = field(default_factory=Counter)  # group → masks this run predicted (written or not)
    empty: Counter[str] = field(default_factory=Counter)  # group → how many of those have no foreground pixel


UNDER_TRAINED = "the model is likely under-trained (too short a training) or not the model file meant for these images"


def empty_masks_warning(predicted: Counter[str], empty: Counter[str], cause: str = UNDER_TRAINED,
                        objects_shared: bool = False) -> Optional[str]:
    """The warning to print when every mask predicted (``predicted``, ``empty``: counts per group, as in
    :class:`PredictReport`) or every mask of some groups is empty, naming how many and the likely ``cause``; None
    when no group's masks are all empty. ``objects_shared``: the groups are known to share an object (generated
    ones), so the warning does not suggest that theirs may share none."""
    blank = sorted(group for group, count in predicted.items() if count and empty[group] == count)
    if not blank:
        return None
    if len(blank) == len(predicted):
        return f"warning: all {sum(predicted.values())} mask(s) predicted are empty (no foreground pixel): {cause}"
    return (f"warning: every mask of {len(blank)} of the {len(predicted)} groups is empty ({shown_names(blank)}; "
            f"{sum(predicted[group] for group in blank)} mask(s)): "
            + ("" if objects_shared else "their images may share no object, or ") + cause)


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it, links resolved."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def output_path(output: Path, relative: Path) -> Path:
    """``output/<relative>.png``, refusing any path that would land outside ``output``."""
    target = (output / relative).with_suffix(".png")
    if ".." in relative.parts or relative.is_absolute() or not is_inside(target, output):
        raise ValueError(f"{printable(relative)}: output path would leave the output folder")
    return target


RED = (255, 40, 40)


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5,
            colour: tuple[int, int, int] = RED) -> np.ndarray:
    """RGB image with the foreground tinted ``colour`` (RGB) and the rest darkened: (H, W, 3) uint8."""
    out = image.astype(np.float32) * np.where(mask[..., None], 1.0, 0.45)
    out[mask] = (1 - alpha) * out[mask] + alpha * np.array(colour, np.float32)
    return out.clip(0, 255).astype(np.uint8)


def scan_input(input_dir: Path) -> Scan:
    """The images to predict under ``input_dir``: the folders layout (a mask folder beside ``images/`` is left out),
    or for an Internet data set (``<Class>/GroundTruth/`` beside each class's images) or an SBCoseg one (PNG masks
    beside the JPEG images) its own layout, so that ground-truth masks are not taken for images. A folder given one
    folder too high (``X/`` holding only ``X/SBCoseg/``, read in the folders layout) has a "data set in a subfolder"
    problem saying "did you mean X/SBCoseg?", as ``coseg train`` and ``evaluate`` tell it."""
    layout = detect_layout(input_dir)
    scan = find_samples(input_dir, layout if layout in ("internet", "sbcoseg") else "folders")
    if layout == "folders" and (nested := data_set_in_subfolder(input_dir)) is not None:
        scan.problems.insert(0, nested)  # listed first: it explains what follows
    return scan


def mask_settings(image_size: int, group_mode: bool, refinement: Optional[GroupRefinement], flip: bool,
                  edges: Optional[EdgeFilter], colour: Optional[GroupColourCut],
                  statistics: Optional[GroupStatistics]) -> dict:
    """The inference settings that change the masks, as JSON values (a step that is off: null)."""
    def fields(step: Any) -> Optional[dict]:
        return None if step is None else dataclasses.asdict(step)

    return {"image_size": image_size, "group_mode": group_mode, "refinement": fields(refinement), "flip": flip,
            "edges": fields(edges), "colour": fields(colour), "statistics": fields(statistics)}


def prediction_record(input_dir: Path, output_dir: Path, checkpoint: Path, settings: dict,
                      digest: Optional[str] = None) -> dict:
    """The content of ``output_dir/predict.json`` (and of the overlays folder's ``overlays.json``): where the input
    folder and the model file are (read by the report), the model file's SHA-256 (``digest`` when already
    computed) and the :func:`mask_settings`."""
    record: dict = {}
    record_path(record, "input", input_dir, output_dir)
    record_model_file(record, checkpoint, output_dir, digest)
    record["settings"] = settings
    return record


# the overlays folder's record: not predict.json, which makes a folder a prediction folder for the report
OVERLAYS_RECORD = "overlays.json"
UNFINISHED = "overwrite_unfinished"  # in a record while an --overwrite run replaces files of other settings


_OWN_FILE = re.compile(r".*\.png|\.DS_Store|Thumbs\.db|desktop\.ini|\._.*", re.IGNORECASE | re.DOTALL)
"""The files a folder of masks or overlays holds: PNGs (their temporary files too), and those a file browser leaves
in a folder it showed (macOS Finder, Windows Explorer)."""


def remove_leftovers(folder: Path, input_dir: Path) -> int:
    """Delete the temporary files of masks and overlays (PNG, :func:`~coseg.atomic.is_temporary`) that killed runs
    left in ``folder`` (an output or overlays folder) and in those of its sub-folders that are predict's, at any
    depth: those holding no file but :data:`_OWN_FILE` ones, reached through such folders, neither hidden (staging
    folders), nor links, nor ``input_dir``. A sub-folder holding another file is left alone with what is under it:
    another tool's (an evaluation's lock or summary.json, a training run's, another predict's record or lock) or the
    user's. Returns how many were removed."""
    removed, pending, input_dir = 0, [folder], input_dir.resolve()
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
            files = [entry for entry in entries if not entry.is_dir()]  # links and other entries too
            folders = [Path(entry.path) for entry in entries
                       if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)]
        except OSError:
            continue  # not a folder (yet), or one that cannot be listed: nothing of predict's there
        if current != folder and not all(_OWN_FILE.fullmatch(entry.name) for entry in files):
            continue
        for entry in files:
            if is_temporary(entry.name, ".png") and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):  # in a folder nobody may write in (an old group's): left there
                    os.unlink(entry.path)
                    removed += 1
        pending.extend(sub for sub in folders if sub.resolve() != input_dir)
    return removed


def _same_folder(a: Path, b: Path) -> bool:
    return a.is_dir() and a.resolve() == b.resolve()


def _differences(previous: dict, record: dict, output_dir: Path, input_dir: Path) -> list[str]:
    """What ``record`` (this run's :func:`predict_folder` record) changes from the ``previous`` one."""
    found = []
    if not any(_same_folder(p, input_dir) for p in recorded_paths(previous, "input", output_dir)):
        found.append(f"input folder {previous.get('input')} (now {record['input']})")
    if previous.get("checkpoint_sha256") != record["checkpoint_sha256"]:
        found.append(f"model file {previous.get('checkpoint')} " + (
            "(its contents changed since)" if previous.get("checkpoint") == record["checkpoint"]
            else f"(now {record['checkpoint']})"))
    recorded = _as_now(previous["settings"], record["settings"])
    for key, value in record["settings"].items():
        if recorded.get(key) != value:
            found.append(f"{key} {json.dumps(recorded.get(key))} (now {json.dumps(value)})")
    return found


def _as_now(recorded: dict, settings: dict) -> dict:
    """The ``recorded`` :func:`mask_settings` of an earlier version as this run's ``settings`` name them: a colour
    cut recorded without ``max_fit_pixels`` (before its fit was ever shrunk) has this run's value when that never
    shrinks the fit at this run's size (the same masks), else none (so it differs)."""
    colour, now = recorded.get("colour"), settings["colour"]
    if not isinstance(colour, dict) or "max_fit_pixels" in colour or now is None:
        return recorded
    cut = GroupColourCut(**now)
    side = cut.size_for(settings["image_size"])
    fitted = cut.max_fit_images if settings["group_mode"] else 1  # without groups each image is fitted alone
    if cut.fit_shape(fitted, side, side) != (side, side):
        return recorded
    return {**recorded, "colour": {**colour, "max_fit_pixels": now["max_fit_pixels"]}}


def _check_record(record_file: Path, record: dict, input_dir: Path, overwrite: bool,
                  existing_outputs: bool, what: str = "mask") -> bool:
    """Refuse (``ValueError``) to add files (``what``: mask, overlay) of ``record``'s settings to a folder whose
    ``record_file`` says its files were made otherwise, unless ``overwrite``; returns whether the files kept so far
    may be of other settings until this run finishes (an ``overwrite`` that replaces them). A folder without a
    record (written before records were kept) or with one of a ``predict --report`` run of an earlier version is
    taken as it is."""
    previous = None
    if record_file.exists():
        try:
            previous = read_json(record_file)
        except ValueError as e:
            if not overwrite:
                raise ValueError(f"{e}; --overwrite predicts every {what} again") from None
    if previous is not None and not isinstance(previous.get("settings"), dict):
        previous = None  # no settings recorded: masks of unknown settings, kept as before
    differences = [] if previous is None else _differences(previous, record, record_file.parent, input_dir)
    unfinished = previous is not None and previous.get(UNFINISHED) is True
    if overwrite:
        return existing_outputs and (unfinished or bool(differences) or previous is None)
    if unfinished:
        raise ValueError(f"{printable(record_file)}: an --overwrite run into this folder with other settings did not "
                         f"finish, so some {what}s may still be of the earlier ones; run it again with --overwrite")
    if differences:
        raise ValueError(f"{printable(record_file)}: the {what}s there were made with " + "; ".join(differences)
                         + " — --overwrite predicts them all again, or choose another folder")
    return False


def _write_record(record_file: Path, record: dict, unfinished: bool) -> None:
    write_text_atomic(record_file, json.dumps({**record, UNFINISHED: True} if unfinished else record, indent=1,
                                              ensure_ascii=False) + "\n")


def predict_folder(model: Model, image_size: int, input_dir: Path, output_dir: Path, device: torch.device,
                   batch_size: int = 8, workers: int = 0, overlays: Optional[Path] = None, overwrite: bool = False,
                   progress: bool = True, group_mode: bool = True,
                   refinement: Optional[GroupRefinement] = None, flip: bool = False,
                   edges: Optional[EdgeFilter] = None, colour: Optional[GroupColourCut] = None,
                   statistics: Optional[GroupStatistics] = None, checkpoint: Optional[Path] = None,
                   warn_empty: bool = True, before_write: Optional[Callable[[Path], None]] = None) -> PredictReport:
    """Write ``output_dir/<relative path>.png`` (0/255 mask at the input's size) for every image under
    ``input_dir`` (:func:`scan_input`). Each subfolder is a group (a flat folder is one group) predicted together
    when ``group_mode``; a group larger than ``batch_size`` is processed in chunks that share its consensus. Masks
    (and overlays) already written are kept unless ``overwrite`` or their image changed since: an interrupted run
    resumes and removes the temporary files a killed run left (of masks and overlays in any folder of predict's
    under ``output_dir`` and ``overlays``, also of images removed or groups renamed since: :func:`remove_leftovers`;
    another tool's, an evaluation's writing into a sub-folder, are left alone). In group mode a group that misses a
    mask (an interrupted run, an image added), holds an image changed since its mask was written or, by the record
    of the run that wrote them (with ``checkpoint``), lost an image, is predicted again whole, and its kept masks are
    written again where their content changes (the others are left as they are), so that its masks are those a
    fresh run writes; :attr:`PredictReport.written` counts both. (The mask of an image removed from the input is
    left where it is.) Files that cannot be read, images the model gives non-finite (NaN/inf) probabilities for,
    broken links, unreadable folders, images whose masks would overwrite each other's (``a.jpg`` and ``a.png``),
    images whose mask would be the folder of other masks (``x.jpg`` beside a folder of images ``x.png/``) or the
    overlay of another image (:func:`overlay_clashes`: that overlay is not written either), images whose mask or
    overlay path is a folder and, with ``checkpoint``, images in a top folder named like the record
    (``predict.json/``, ``overlays.json/``) are skipped and listed (the latter four, in group mode, still predicted
    with their group, whose consensus does not depend on file names); so are images whose outputs cannot be written
    (:data:`ONE_FILE_ERRORS`: any other write error, a full disk, stops the run) or that cannot be read again for
    their overlay (a file replaced or removed during the run). ``refinement``, ``flip``, ``edges``, ``colour`` and
    ``statistics``: as in :func:`~coseg.inference.predict_dataset`.

    ``checkpoint``: the file ``model`` was loaded from. With it, ``output_dir/predict.json`` records, before any
    mask is written, what makes the masks: the input folder, the model file (path and SHA-256) and
    :func:`mask_settings`; a run into a folder whose record differs is refused (``ValueError`` naming what
    differs) unless ``overwrite``, so that the folder never mixes masks of two settings. Until an ``overwrite`` run
    that replaces masks of other settings finishes, the record says so, and a run without ``overwrite`` is refused.
    In group mode a finished run also records which images each group held (digests: :data:`MEMBERS`).
    ``overlays/overlays.json`` records and guards the overlays in the same way. A run into a folder another run
    is writing into is refused (``ValueError``) before it reads or writes anything there.
    With ``warn_empty``, a warning on stderr says when every mask this run predicted is empty, or every mask of a
    group (:func:`empty_masks_warning`; :attr:`PredictReport.empty` counts them either way).
    ``before_write``: called with ``output_dir`` while the run holds its lock, when it has images to predict, before
    it writes anything (`coseg predict` removes an earlier report with it, which would show other masks; what it
    raises stops the run with nothing written).
    Nothing is ever written inside ``input_dir``: a run whose masks or overlays would land there (an output
    folder holding the input folder) is refused (``ValueError``) before anything is written."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    check_group_steps(group_mode, refinement, statistics)  # before predict.json is written
    if not input_dir.is_dir():
        raise ValueError(f"{printable(input_dir)}: input folder not found")
    for target, what in ((output_dir, "output"), (overlays, "overlays")):
        if target is not None and is_inside(target, input_dir):
            raise ValueError(f"the {what} folder {printable(target)} is inside the input folder "
                             f"{printable(input_dir)}: choose an {what} folder elsewhere (predict never writes into "
                             "its input)")
    if overlays is not None and Path(overlays).resolve() == output_dir.resolve():
        raise ValueError(f"{printable(overlays)} is both the masks' and the overlays' folder: each overlay would "
                         "replace its mask; choose another folder for the overlays")
    with _locked(output_dir, overlays):  # before a record is read or a file removed or written
        scan = scan_input(input_dir)
        relatives = [sample.image.relative_to(input_dir) for sample in scan.samples]
        masks = [output_path(output_dir, relative) for relative in relatives]
        tints = None if overlays is None else [output_path(overlays, relative) for relative in relatives]
        for target, targets in ((output_dir, masks), (overlays, tints)):
            if target is not None and targets is not None and is_inside(input_dir, target):
                _check_outside_input(input_dir, relatives, targets)
        # (record file, record, whether files of other settings stay until this run ends), all checked before writing
        records: list[tuple[Path, dict, bool]] = []
        members = group_members(scan.samples, relatives) if group_mode else {}
        recorded: dict[str, str] = {}  # the groups' members as the files kept were predicted with
        if checkpoint is not None:
            settings = mask_settings(image_size, group_mode, refinement, flip, edges, colour, statistics)
            digest = file_digest(Path(checkpoint))
            for folder, targets, name, what in ((output_dir, masks, PREDICT_RECORD, "mask"),
                                                (overlays, tints, OVERLAYS_RECORD, "overlay")):
                if folder is not None and targets is not None:
                    record = prediction_record(input_dir, folder, checkpoint, settings, digest)
                    records.append((folder / name, record, _check_record(
                        folder / name, record, input_dir, overwrite, any(t.exists() for t in targets), what)))
                    if group_mode:
                        recorded.update(_recorded_members(folder / name))
        # left by a killed run: of this run's files, and of masks and overlays in predict's own folders (of images
        # removed or groups renamed since), not of another tool's (an evaluation writing into a sub-folder)
        remove_temporaries_of([*masks, *(tints or []), *(record_file for record_file, _, _ in records)])
        for folder in (output_dir, overlays):
            if folder is not None:
                remove_leftovers(folder, input_dir)
        report = PredictReport(output=output_dir)
        report.skipped.extend(skipped_inputs(scan))
        clashing = set()
        for clash in clashes(masks):
            clashing.update(clash)
            # their names where they are in one folder, else their paths (``Cats/c.jpg``, ``cats/c.jpg``)
            shown = (lambda path: path.name) if len({relatives[i].parent for i in clash}) == 1 else (lambda path: path)
            names = ", ".join(printable(shown(relatives[i])) for i in clash)
            report.skipped.extend((printable(scan.samples[i].image), f"{printable(scan.samples[i].image)}: images "
                                   f"{names} would write the same mask "
                                   f"{printable(shown(masks[i].relative_to(output_dir)))} (names compared ignoring "
                                   "case); rename all but one") for i in clash)
        for i, folder in folder_clashes(masks).items():
            if i in clashing:
                continue  # listed once
            clashing.add(i)
            image = printable(scan.samples[i].image)
            report.skipped.append((image, f"{image}: its mask {printable(masks[i].relative_to(output_dir))} would be "
                                   f"the folder of the masks of the images in "
                                   f"{printable(input_dir / folder.relative_to(output_dir))} (names compared ignoring "
                                   "case); rename the image or that folder"))
        no_overlay = set()  # images whose overlay would be another image's mask (neither is written)
        for i, j in [] if tints is None else overlay_clashes(masks, tints):
            shared = printable(masks[i])
            for k, own, other, of in ((i, "mask", "overlay", j), (j, "overlay", "mask", i)):
                if k in clashing:
                    continue  # listed once
                image = printable(scan.samples[k].image)
                report.skipped.append((image, f"{image}: its {own} would be the {other} of "
                                       f"{printable(relatives[of])}, {shared} (names compared ignoring case), so "
                                       "neither is written; choose an overlays folder outside the output folder"))
            clashing.add(i)
            no_overlay.add(j)
        if checkpoint is not None:
            for folder, name in ((output_dir, PREDICT_RECORD), (overlays, OVERLAYS_RECORD)):
                for i in [] if folder is None else record_clashes(relatives, name):
                    if i not in clashing:
                        clashing.add(i)
                        image = printable(scan.samples[i].image)
                        report.skipped.append((image, f"{image}: its output would be in {printable(folder / name)}, "
                                               "the file where predict records how its outputs were made (names "
                                               "compared ignoring case); rename the folder "
                                               f"{printable(input_dir / relatives[i].parts[0])}"))
        for i, mask in enumerate(masks):
            for path, what in ((mask, "mask"), (None if tints is None or i in no_overlay else tints[i], "overlay")):
                if i not in clashing and path is not None and path.is_dir():
                    clashing.add(i)
                    image = printable(scan.samples[i].image)
                    report.skipped.append((image, f"{image}: its {what} cannot be written: {printable(path)} is a "
                                           "folder; move or rename that folder"))
        # (sample, mask, overlay): None where no file is written (clashing masks, no overlays asked)
        planned: list[tuple[Sample, Optional[_Target], Optional[_Target]]] = []
        kept = 0  # masks up to date before this run
        for i, (sample, mask) in enumerate(zip(scan.samples, masks)):
            mask_target, tint_target = (None if i in clashing or path is None else
                                        _Target(path, overwrite or not _up_to_date(path, sample.image))
                                        for path in (mask, None if tints is None or i in no_overlay else tints[i]))
            kept += mask_target is not None and not mask_target.fresh
            planned.append((sample, mask_target, tint_target))
        if group_mode:  # a group with an image added, changed or removed is predicted whole (with the images whose
            # masks clash, though not written): its consensus is that of the whole group, and so are its kept masks'
            # contents
            redo = {sample.group for sample, *targets in planned if any(t is not None and t.fresh for t in targets)}
            redo.update(group for group, digest in members.items() if recorded.get(_key(group), digest) != digest)
            todo = [plan for plan in planned if plan[0].group in redo]
        else:
            todo = [(sample, *(t if t is not None and t.fresh else None for t in targets))
                    for sample, *targets in planned if any(t is not None and t.fresh for t in targets)]
        if todo and before_write is not None:
            before_write(output_dir)
        for record_file, record, unfinished in records:  # the members recorded stay until this run has finished
            _write_record(record_file, {**record, MEMBERS: recorded} if recorded else record, unfinished)
        dataset = images_for([sample.image for sample, _, _ in todo], image_size, colour)
        groups = group_ids([sample for sample, _, _ in todo]) if group_mode else None
        bar = tqdm(total=len(todo), desc="predicting", unit="img", disable=not progress, leave=False)
        # The atomic writes (mostly waiting for fsync) always run in a background thread while the model goes on; PNG
        # encoding runs there too only with a core to spare, since where the model fills every core it would only
        # compete with it.
        spare = spare_cpu(device)
        changed = 0  # kept masks written again, their group's new consensus having changed them

        def skip(image: Path, error: Exception) -> None:
            """List ``image``, whose outputs ``error`` kept from being written, or raise ``error`` when it keeps any
            output from being written (a full disk, a read-only file system)."""
            if isinstance(error, OSError) and error.errno not in ONE_FILE_ERRORS:
                raise error
            report.skipped.append((printable(image), str(error) if isinstance(error, DataFileError) else
                                   f"{printable(image)}: its output could not be written ({error})"))

        def count(job: Future, mask: Optional[_Target], image: Path) -> None:
            nonlocal changed
            try:
                written = job.result()  # a failed write raises here
            except (DataFileError, OSError) as e:
                skip(image, e)
                return
            if mask is not None and written[-1]:
                report.written += 1
                changed += not mask.fresh

        with single_threaded_pool(WRITER_THREADS if spare else 1) as writer:
            pending: deque[tuple[Future, Optional[_Target], Path]] = deque()
            for index, result in predict_dataset(model, dataset, device, batch_size, workers, original_size=True,
                                                 groups=groups, refinement=refinement, flip=flip, edges=edges,
                                                 colour=colour, statistics=statistics):
                bar.update(1)
                sample, target, tinted = todo[index]
                if isinstance(result, str):
                    report.skipped.append((printable(sample.image), result))
                    continue
                report.predicted[sample.group] += 1
                report.empty[sample.group] += not result.any()
                if target is None and tinted is None:
                    continue  # predicted only as part of its group
                if spare:
                    job = writer.submit(_write_outputs, result, target, sample.image, tinted)
                else:
                    try:
                        job = writer.submit(_write_files, _encoded_outputs(result, target, sample.image, tinted))
                    except DataFileError as e:  # the image, read again for its overlay, became unreadable since
                        skip(sample.image, e)
                        continue
                pending.append((job, target, sample.image))
                if len(pending) > MAX_PENDING_WRITES:
                    count(*pending.popleft())  # the backlog stays bounded
            for job in pending:
                count(*job)
        report.already_done = kept - changed
        bar.close()
        for record_file, record, unfinished in records:
            if unfinished or group_mode:
                _write_record(record_file, {**record, MEMBERS: {_key(g): d for g, d in members.items()}} if group_mode
                              else record, False)
        warning = empty_masks_warning(report.predicted, report.empty) if warn_empty else None
        if warning is not None:
            print(warning, file=sys.stderr)
        return report


LOCK = ".predict.lock"  # held in the output (and overlays) folder while a run writes there: a second run is refused


@contextlib.contextmanager
def _locked(output_dir: Path, overlays: Optional[Path]) -> Iterator[None]:
    """Hold predict's :data:`LOCK` in the output folder and in the overlays folder, if any, for the block."""
    with contextlib.ExitStack() as locks:
        for folder, option in ((output_dir, "--output"), (overlays, "--overlays")):
            if folder is not None:
                locks.enter_context(folder_lock(folder, LOCK, "another `coseg predict` or a `coseg evaluate` is "
                                                "writing there", option))
        yield


MEMBERS = "group_members"  # in a record: a digest of each group's name → a digest of its images' paths


def _key(group: str) -> str:
    return _digest([group])


def _digest(names: Sequence[str]) -> str:
    """SHA-1 of ``names`` (any file name, undecodable bytes included), one per line."""
    return hashlib.sha1("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()


def group_members(samples: Sequence[Sample], relatives: Sequence[Path]) -> dict[str, str]:
    """Each group of ``samples`` → a digest of its images' paths (``relatives``, one per sample): it changes when an
    image joins or leaves the group."""
    paths: dict[str, list[str]] = {}
    for sample, relative in zip(samples, relatives):
        paths.setdefault(sample.group, []).append(relative.as_posix())
    return {group: _digest(sorted(names)) for group, names in paths.items()}


def _recorded_members(record_file: Path) -> dict[str, str]:
    """The :data:`MEMBERS` of a record ({} when there is none, or no readable record)."""
    try:
        found = read_json(record_file).get(MEMBERS) if record_file.is_file() else None
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _up_to_date(target: Path, image: Path) -> bool:
    """Whether ``target`` (a mask or an overlay of ``image``) exists and was written after ``image`` last changed:
    an image replaced since (same name, new content) is predicted again, also when the file put in its place kept
    an older modification time (cp -p, rsync -t, unzip) or the link of its name was pointed at another file, by
    their change times, which no tool sets back."""
    try:
        file, name = image.stat(), image.lstat()
        return target.stat().st_mtime_ns >= max(file.st_mtime_ns, file.st_ctime_ns, name.st_ctime_ns)
    except OSError:  # no such file yet (an unreadable image is skipped and listed when it is read)
        return False


# the scan problems that leave an image unpredicted (an "image without mask" is still predicted), and the hint that
# the input may be one folder too high, whose masks would be read as images
SKIPPING_PROBLEMS = ("broken link", "skipped folder", "outside any group", "ambiguous image", "unsupported file",
                     "data set in a subfolder")


def skipped_inputs(scan: Scan) -> list[tuple[str, str]]:
    """(file, reason) for each problem of ``scan`` that leaves a file of the input unpredicted (or may: the input
    given one folder too high): those of ``SKIPPING_PROBLEMS`` and, in the sbcoseg layout, each "mask without
    image": a PNG among the images (a PNG photo in a group of its own) that the layout takes for a mask since no JPEG
    of its stem is beside it."""
    found = []
    for problem in scan.problems:
        if problem.kind in SKIPPING_PROBLEMS:
            found.append((printable(problem.path), str(problem)))
        elif scan.layout == "sbcoseg" and problem.kind == "mask without image":
            found.append((printable(problem.path), f"{problem}: in the sbcoseg layout a PNG is the mask of the JPEG "
                                                   "of its stem beside it; to segment PNG photos, predict their folder "
                                                   "on its own"))
    return found


def clashes(targets: Sequence[Path]) -> list[list[int]]:
    """Indices of the ``targets`` that name one file, compared ignoring case (as macOS and Windows file systems
    do), in sets of two or more: images with one stem in one folder (``a.jpg``, ``a.PNG``) would write one mask."""
    same: dict[str, list[int]] = {}
    for i, target in enumerate(targets):
        same.setdefault(str(target).casefold(), []).append(i)
    return [indices for indices in same.values() if len(indices) > 1]


def folder_clashes(targets: Sequence[Path]) -> dict[int, Path]:
    """The indices of the ``targets`` that name (compared ignoring case) a folder other targets are in, each with
    that folder: the mask ``g/x.png`` of an image ``g/x.jpg`` cannot be written where a folder of images ``g/x.png/``
    has its masks written in ``g/x.png/``."""
    folders: dict[str, Path] = {}
    for target in targets:
        for parent in target.parents:
            folders.setdefault(str(parent).casefold(), parent)
    return {i: folders[key] for i, target in enumerate(targets) if (key := str(target).casefold()) in folders}


def overlay_clashes(masks: Sequence[Path], tints: Sequence[Path]) -> list[tuple[int, int]]:
    """``(i, j)`` for each mask ``masks[i]`` that is the overlay ``tints[j]`` of another image (compared ignoring
    case): an overlays folder inside the output folder, named like a group (``--overlays out/ov``, a group ``ov/g/``
    beside ``g/``)."""
    overlay_of = {str(tint).casefold(): j for j, tint in enumerate(tints)}
    return [(i, overlay_of[key]) for i, mask in enumerate(masks) if (key := str(mask).casefold()) in overlay_of]


def record_clashes(relatives: Sequence[Path], record: str) -> list[int]:
    """The indices of the images (``relatives``: paths under the input folder) in a top folder named ``record``
    (compared ignoring case): their outputs would go in a folder where the record file of that name is written."""
    return [i for i, relative in enumerate(relatives)
            if len(relative.parts) > 1 and relative.parts[0].casefold() == record.casefold()]


def _check_outside_input(input_dir: Path, relatives: Sequence[Path], targets: Sequence[Path]) -> None:
    """Refuse (``ValueError``) ``targets`` (one per image at ``input_dir/relatives``) of which one is inside
    ``input_dir``, as happens when the output folder holds the input folder (``--input out/in --output out`` and a
    group folder ``out/in/in/``): a mask would be written among, or over, the input images."""
    for relative, target in zip(relatives, targets):
        if is_inside(target, input_dir):
            raise ValueError(f"{printable(target)}, the output of {printable(input_dir / relative)}, would be "
                             f"inside the input folder {printable(input_dir)}: choose an output folder elsewhere "
                             "(predict never writes into its input)")


WRITER_THREADS = 2
# errors writing one image's outputs (a file where a group's folder would be, a folder nobody may write in, a name too
# long for the file system) that skip that image; any other stops the run
ONE_FILE_ERRORS = frozenset({errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG})
MAX_PENDING_WRITES = 64


@dataclass(frozen=True)
class _Target:
    """A mask or overlay file to write: ``fresh`` when it is missing, older than its image or ``--overwrite`` asks
    for it (always written), else kept unless its content changes."""
    path: Path
    fresh: bool


def _encoded_outputs(mask: np.ndarray, target: Optional[_Target], image_path: Path,
                     overlay_target: Optional[_Target]) -> list[tuple[_Target, bytes]]:
    """The PNG files to write for one image: its overlay and its mask (last, so that a failed write leaves no mask
    that would be taken for done), each where a target is given. Raises ``DataFileError`` when the image, read
    again for its overlay, cannot be read or is no longer of its mask's size (a file replaced during the run)."""
    files = []
    if overlay_target is not None:
        image = read_image(image_path)
        if image.shape[:2] != mask.shape:
            raise DataFileError(image_path, f"changed during the run: {image.shape[0]}x{image.shape[1]} (HxW) now, "
                                f"{mask.shape[0]}x{mask.shape[1]} when it was predicted; predict it again")
        files.append((overlay_target, encode_png(overlay(image, mask), overlay_target.path)))
    return files if target is None else [*files, (target, encode_png(mask, target.path))]


def _write_files(files: list[tuple[_Target, bytes]]) -> list[bool]:
    """Write each file (atomically); returns, for each, whether it was written."""
    written = []
    for target, data in files:
        if target.fresh:
            write_bytes_atomic(target.path, data)
        written.append(target.fresh or write_bytes_if_changed(target.path, data))
    return written


def _write_outputs(mask: np.ndarray, target: Optional[_Target], image_path: Path,
                   overlay_target: Optional[_Target]) -> list[bool]:
    return _write_files(_encoded_outputs(mask, target, image_path, overlay_target))
