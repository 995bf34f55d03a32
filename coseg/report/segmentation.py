"""The co-segmentation parts of a report: an ``evaluate`` output folder (scores, worst first, and image | ground truth
| prediction grids) and a ``predict`` output folder (image | prediction grids)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, TypeVar

import numpy as np
from tqdm.auto import tqdm

from coseg.data import DataFileError, printable, read_image, read_mask, read_pair
from coseg.data.io import same_aspect
from coseg.predict import output_path, scan_input
from coseg.report.files import (PREDICT_RECORD, PREDICTION_INDEX, PREDICTION_INDEX_COLUMNS, PREDICTIONS, as_float,
                                cell_path, json_count, json_number, json_value, model_file_changed, read_csv,
                                read_json, recorded_paths, required_columns, row_path)
from coseg.report.html import esc, image, link, shown_number, table, tiles
from coseg.report.thumbnails import GROUND_TRUTH_COLOUR, write_thumbnail

T = TypeVar("T")


@dataclass(frozen=True)
class ImageRow:
    """One row of ``per_image.csv``: P and J in percent (J NaN when the ground truth is empty)."""

    group: str
    image: str
    P: float
    J: float
    empty_gt: bool


def worst_first_key(j: float, p: float) -> tuple[bool, tuple[bool, float], tuple[bool, float]]:
    """Sort key putting the worst first: lowest J first, ties by lowest P; rows without a J (empty ground truth, or
    a damaged cell) come after all scored rows, lowest P first; a missing P (NaN) after every P. A total order,
    unlike NaN's comparisons."""
    def missing_last(x: float) -> tuple[bool, float]:
        return (True, 0.0) if math.isnan(x) else (False, x)

    return math.isnan(j), missing_last(p if math.isnan(j) else j), missing_last(p)


def worst_first(rows: Sequence[ImageRow]) -> list[ImageRow]:
    return sorted(rows, key=lambda r: worst_first_key(r.J, r.P))


def is_evaluation(folder: Path) -> bool:
    return (folder / "per_image.csv").is_file() and (folder / "summary.json").is_file()


def is_prediction(folder: Path) -> bool:
    return (folder / PREDICT_RECORD).is_file()


def read_per_image(path: Path) -> list[ImageRow]:
    rows = read_csv(path, ("group", "image", "P", "J", "empty_gt"))[1]
    return [ImageRow(r["group"], r["image"], as_float(r["P"]), as_float(r["J"]), r["empty_gt"] == "1") for r in rows]


def _read_prediction_index(folder: Path) -> dict[tuple[str, str], dict[str, str]]:
    path = folder / PREDICTIONS / PREDICTION_INDEX
    if not path.is_file():
        return {}
    return {(r["group"], r["image"]): r for r in read_csv(path, required_columns(PREDICTION_INDEX_COLUMNS))[1]}


class Thumbnails:
    """Numbered thumbnail files in the report's files folder; a file that cannot be read becomes a note, and the
    reasons of those are kept (``unshown``) for :meth:`unshown_note`, and added to ``tally`` when given (the
    report's count over its sections)."""

    def __init__(self, files: Path, prefix: str, max_side: int, tally: Optional[list[str]] = None) -> None:
        self.files, self.prefix, self.max_side = files, prefix, max_side
        self.count = 0
        self.unshown: list[str] = []
        self.tally = tally

    def cell(self, caption: str, alt: str, make: Callable[[Path], None], css_class: str = "") -> str:
        """A figure for the PNG ``make(path)`` writes (``caption``: HTML), or, when it fails, a figure with the
        caption (an image's scores, a neighbour's rank and class) and the reason."""
        self.count += 1
        name = f"{self.prefix}_{self.count:05d}.png"
        try:
            make(self.files / name)
        except (DataFileError, ValueError) as e:
            self.unshown.append(str(e))
            if self.tally is not None:
                self.tally.append(str(e))
            return f"<figure><figcaption>{caption or esc(alt)}<br>not shown: {esc(e)}</figcaption></figure>"
        return image(link(self.files, name), alt, caption, css_class)

    def unshown_note(self) -> str:
        """HTML counting the pictures not shown, with the first reason (empty when all were): among hundreds of
        groups a caption saying why is easily missed."""
        if not self.unshown:
            return ""
        return (f"<p><strong>Not shown:</strong> {len(self.unshown)} of the {self.count} pictures below (each caption "
                f"says why; the first: {esc(self.unshown[0])}).</p>")


def _score_caption(row: ImageRow) -> str:
    """The image's name and scores (a missing one, NaN, shown – as in the tables)."""
    return f"{esc(row.image)}<br>P {shown_number(row.P, '.1f')} · J {shown_number(row.J, '.1f')}"


def evaluation_section(folder: Path, files: Path, prefix: str, per_group: int, max_side: int,
                       progress: bool, tally: Optional[list[str]] = None) -> str:
    """HTML for a co-segmentation ``evaluate`` output folder: the summary, the per-group and per-image tables worst
    first, and per group (worst first) its ``per_group`` worst images as image | ground truth | prediction."""
    summary_path = folder / "summary.json"
    summary = read_json(summary_path)
    rows = read_per_image(folder / "per_image.csv")
    groups: dict[str, list[ImageRow]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    per_group_scores = json_value(summary.get("per_group"), dict, summary_path, "per_group")
    group_rows = []
    for g, rs in groups.items():
        scores = json_value(per_group_scores.get(g), dict, summary_path, f"per_group.{g}")
        p, j = (json_number(scores.get(key), summary_path, f"per_group.{g}.{key}") for key in ("P", "J"))
        group_rows.append((g, json_count(scores.get("images", len(rs)), summary_path, f"per_group.{g}.images"), p, j))
    skipped = [json_value(s, dict, summary_path, f"skipped_files[{n}]")
               for n, s in enumerate(json_value(summary.get("skipped_files"), list, summary_path, "skipped_files"))]
    group_rows.sort(key=lambda r: worst_first_key(r[3], r[2]))
    parts = [f'<p class="note">Evaluation folder: <code>{esc(folder.resolve())}</code>'
             + (f"; checkpoint <code>{esc(summary['checkpoint'])}</code>" if summary.get("checkpoint") else "")
             + "</p>" + model_changed_note(summary, folder),
             table(["mean P", "mean J", "images", "groups", "empty ground truth", "images with empty ground truth",
                    "skipped files"],
                   [[json_number(summary.get("P"), summary_path, "P"),
                     json_number(summary.get("J"), summary_path, "J"),
                     json_count(summary.get("images"), summary_path, "images"), len(groups), summary.get("empty", ""),
                     json_count(summary.get("empty_gt_images"), summary_path, "empty_gt_images"),
                     json_count(summary.get("skipped", 0), summary_path, "skipped")]],
                   sortable=False),
             seen_data_note(summary, summary_path, len(per_group_scores) or len(groups)),
             "<p class=\"note\">P = pixel accuracy, J = foreground IoU, in percent, at the ground truth's resolution; "
             "averaged per group, then over groups. Tables are sorted worst first (lowest J, then lowest P; images "
             "without a J, whose ground truth is empty, last; a missing score, –, after every number); click a "
             "header to sort by it.</p>",
             "<h3>Per group</h3>", table(["group", "images", "P", "J"], group_rows, table_id=f"{prefix}-groups")]
    parts.extend(_evaluation_grids(folder, files, prefix, per_group, max_side, progress, groups, group_rows, tally))
    parts += [f"<h3>Per image ({len(rows)})</h3>",
              table(["group", "image", "P", "J", "empty ground truth"],
                    [[r.group, r.image, r.P, r.J, "yes" if r.empty_gt else ""] for r in worst_first(rows)],
                    table_id=f"{prefix}-images")]
    if skipped:
        parts.append(f"<h3>Skipped files ({len(skipped)})</h3>")
        parts.append(table(["file", "reason"], [[s.get("file", ""), s.get("reason", "")] for s in skipped]))
    return "\n".join(parts)


def model_changed_note(record: dict, folder: Path, what: str = "scores") -> str:
    """HTML saying that the model file a result file of ``folder`` recorded now holds another model (a resumed or
    new training wrote over it): ``what`` (scores, masks) are of the earlier one, and the training curves shown for
    its run may be of the new one; empty otherwise (:func:`~coseg.report.files.model_file_changed`)."""
    changed = model_file_changed(record, folder)
    if changed is None:
        return ""
    return (f"<p><strong>Note:</strong> the model file <code>{esc(printable(changed))}</code> has changed since: these "
            f"{what} are of the model it held then, and its run's training curves may be of the new one.</p>")


def seen_data_note(summary: dict, path: Path, evaluated: int, noun: str = "groups") -> str:
    """HTML saying, as ``evaluate`` prints it, how many of the ``evaluated`` groups (or other ``noun``) the model was
    trained on (its scores are not of unseen data) and validated on (its epoch was chosen on them): the counts
    ``trained_on`` and ``validated_on`` of the summary ``path``; empty when there are none (or none recorded)."""
    trained, validated = (json_count(summary.get(key), path, key) for key in ("trained_on", "validated_on"))
    were = ["was" if count == 1 else "were" for count in (trained, validated)]
    return ((f"<p><strong>Warning:</strong> {trained} of the {evaluated} evaluated {noun} {were[0]} used to train "
             "this model: these scores are not of unseen data.</p>" if trained else "")
            + (f'<p class="note">{validated} of the {evaluated} evaluated {noun} {were[1]} this model\'s validation '
               f"{noun} (used to choose its epoch).</p>" if validated else ""))


def _evaluation_grids(folder: Path, files: Path, prefix: str, per_group: int, max_side: int, progress: bool,
                      groups: dict[str, list[ImageRow]], group_rows: list[tuple],
                      tally: Optional[list[str]]) -> list[str]:
    """Per group, worst group first, its worst images as image | ground truth | prediction tiles (those not drawn
    added to ``tally``, see :class:`Thumbnails`)."""
    index = _read_prediction_index(folder)
    if not index:
        return ["<p>No predicted masks saved in this folder: run <code>coseg evaluate … --report</code> to see "
                "image | ground truth | prediction grids.</p>"]
    parts = []
    thumbs = Thumbnails(files, prefix, max_side, tally)
    shown = [(g, worst_first(groups[g])[:per_group]) for g, *_ in group_rows]
    bar = tqdm(total=sum(len(rs) for _, rs in shown), desc="report thumbnails", unit="img", disable=not progress,
               leave=False)
    for group, group_images in shown:
        parts.append(f"<h3>{esc(group)}</h3>")
        if len(groups[group]) > len(group_images):
            parts.append(f'<p class="note">The {len(group_images)} worst of {len(groups[group])} images.</p>')
        triples = []
        for row in group_images:
            triples.append(_evaluation_cells(folder, index.get((row.group, row.image)), row, thumbs))
            bar.update(1)
        parts.append(tiles(triples, max_side))
    bar.close()
    return [thumbs.unshown_note()] + parts


def once(load: Callable[[], T]) -> Callable[[], T]:
    """A function returning what ``load()`` returns, called on the first call only (errors raised on each call)."""
    held: list[T] = []

    def get() -> T:
        if not held:
            held.append(load())
        return held[0]

    return get


def read_once(path: Path) -> Callable[[], np.ndarray]:
    """A function returning the image at ``path`` (read on the first call only; errors raised on each call)."""
    return once(lambda: read_image(path))


def _evaluation_cells(folder: Path, entry: Optional[dict[str, str]], row: ImageRow, thumbs: Thumbnails) -> list[str]:
    if entry is None:
        return [f"<figure><figcaption>{esc(row.image)}: no saved prediction</figcaption></figure>"]
    predictions = folder / PREDICTIONS
    predicted = predictions / cell_path(entry["prediction"])
    # the photo as its ground truth was drawn (stored orientation where only that fits an EXIF-rotated photo's
    # mask; resized to a mask saved at another resolution), which the saved prediction follows too
    pair = once(lambda: read_pair(row_path(entry, "image_path", predictions), row_path(entry, "mask_path", predictions),
                                  any_nonzero=entry["any_nonzero"] == "1", resize_image=True))
    return [
        thumbs.cell(_score_caption(row), row.image, lambda p: write_thumbnail(p, pair()[0], thumbs.max_side)),
        thumbs.cell("ground truth", f"ground truth of {row.image}", lambda p: write_thumbnail(
            p, pair()[0], thumbs.max_side, pair()[1], GROUND_TRUTH_COLOUR)),
        thumbs.cell("prediction", f"prediction for {row.image}",
                    lambda p: write_thumbnail(p, pair()[0], thumbs.max_side, _drawn_over(
                        read_mask(predicted), predicted, pair()[1]))),
    ]


def _drawn_over(mask: np.ndarray, path: Path, picture: np.ndarray) -> np.ndarray:
    """``mask`` (H, W), read from ``path``, to be drawn over ``picture`` (H, W[, 3]: the ground truth or image it was
    saved at the size of); a ``ValueError`` when it is of another aspect ratio (the file was replaced since), which
    its thumbnail would show stretched."""
    if not same_aspect(mask.shape, picture.shape[:2]):
        raise ValueError(f"{printable(path)}: a mask of {mask.shape[1]}×{mask.shape[0]} pixels for a picture of "
                         f"{picture.shape[1]}×{picture.shape[0]}, another aspect ratio (replaced since it was "
                         "written?)")
    return mask


def prediction_section(folder: Path, files: Path, prefix: str, per_group: int, max_side: int,
                       progress: bool, tally: Optional[list[str]] = None) -> str:
    """HTML for a ``predict --report`` output folder: per group its first ``per_group`` images with a mask as image |
    prediction, and a table of every image's predicted foreground share (sortable)."""
    record = read_json(folder / PREDICT_RECORD)
    if not isinstance(record.get("input"), str):
        raise ValueError(f"{printable(folder / PREDICT_RECORD)}: no input folder named")
    source = next((p for p in recorded_paths(record, "input", folder) if p.is_dir()), None)
    if source is None:
        raise ValueError(f"{printable(folder / PREDICT_RECORD)}: the input folder {record['input']} is gone")
    samples = scan_input(source).samples  # the images predict read
    thumbs = Thumbnails(files, prefix, max_side, tally)
    groups: dict[str, list] = {}
    for sample in samples:
        groups.setdefault(sample.group, []).append(sample)
    rows, parts = [], [f'<p class="note">Masks in <code>{esc(folder.resolve())}</code> for the images in '
                       f'<code>{esc(source.resolve())}</code>'
                       + (f"; checkpoint <code>{esc(record['checkpoint'])}</code>" if record.get("checkpoint") else "")
                       + "</p>" + model_changed_note(record, folder, "masks")]
    grids = []
    bar = tqdm(total=len(samples), desc="report thumbnails", unit="img", disable=not progress, leave=False)
    for group in sorted(groups, key=printable):
        pairs, masked = [], 0  # masked: the group's images with a mask
        for sample in groups[group]:
            name = printable(sample.image.relative_to(source))
            mask_file = output_path(folder, sample.image.relative_to(source))
            try:
                mask = read_mask(mask_file)
            except DataFileError as e:  # the image may be fine: say what is wrong with its mask
                rows.append([printable(group), name, math.nan, "no mask written (predict skipped this image or has "
                             "not reached it)" if not mask_file.exists() else f"mask unreadable ({e.problem})"])
                continue
            finally:
                bar.update(1)
            rows.append([printable(group), name, 100.0 * float(mask.mean()), ""])
            masked += 1
            if len(pairs) < per_group:
                photo = read_once(sample.image)
                pairs.append([thumbs.cell(esc(sample.image.name), name,
                                          lambda p: write_thumbnail(p, photo(), max_side)),
                              thumbs.cell(f"prediction: foreground {100 * mask.mean():.1f} %", f"prediction for {name}",
                                          lambda p: write_thumbnail(
                                              p, photo(), max_side, _drawn_over(mask, mask_file, photo())))])
        grids.append(f"<h3>{esc(printable(group))}</h3>"
                     + (f'<p class="note">The first {per_group} of the {masked} images with a mask.</p>'
                        if masked > per_group else "")
                     + tiles(pairs, max_side))
    bar.close()
    parts.append(f"<h3>Images ({len(rows)})</h3>")
    parts.append(table(["group", "image", "foreground %", "note"], rows))
    return "\n".join(parts + [thumbs.unshown_note()] + grids)
