"""The retrieval part of a report: a ``coseg retrieval evaluate --report`` output folder (the scores, the R@K curve,
and query → nearest neighbours with their distances, right or wrong); without ``--report``, the scores alone."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from tqdm.auto import tqdm

from coseg.data.io import printable
from coseg.report.files import (NEIGHBOUR_COLUMNS, NEIGHBOURS, RECALL_CURVE, as_float, int_cell, json_count,
                                json_number, read_csv, read_json, required_columns, row_path)
from coseg.report.html import esc, link, shown_number, table, tiles
from coseg.report.plots import line_plot
from coseg.report.segmentation import Thumbnails, model_changed_note, read_once, seen_data_note
from coseg.report.thumbnails import write_thumbnail

METRICS = ("R@1", "R@2", "R@4", "R@8", "MAP@R", "NMI")


def is_retrieval_evaluation(folder: Path) -> bool:
    """Whether ``folder`` holds a ``coseg retrieval evaluate`` output: its summary.json, with neighbours.csv
    (``--report``) or holding the retrieval metrics R@1 and MAP@R (without ``--report``)."""
    summary = folder / "summary.json"
    if not summary.is_file():
        return False
    if (folder / NEIGHBOURS).is_file():
        return True
    try:
        return {"R@1", "MAP@R"} <= read_json(summary).keys()
    except ValueError:  # not a retrieval evaluation's summary that can be told from its files
        return False


def retrieval_section(folder: Path, files: Path, prefix: str, max_side: int, progress: bool,
                      tally: Optional[list[str]] = None) -> str:
    """HTML for a retrieval evaluation folder: metrics, the R@K curve (``<prefix>_recall.png``) and one row per
    shown query: the query, then its nearest neighbours with distance and a right (same class) / wrong mark."""
    summary_path = folder / "summary.json"
    summary = read_json(summary_path)
    parts = [f'<p class="note">Evaluation folder: <code>{esc(folder.resolve())}</code>'
             + (f"; checkpoint <code>{esc(summary['checkpoint'])}</code>" if summary.get("checkpoint") else "")
             + "</p>" + model_changed_note(summary, folder),
             table(list(METRICS) + ["images", "classes", "split"],
                   [[json_number(summary.get(m), summary_path, m) for m in METRICS]
                    + [json_count(summary.get(c), summary_path, c) for c in ("images", "classes")]
                    + [summary.get("split", "")]], sortable=False),
             seen_data_note(summary, summary_path, json_count(summary.get("classes"), summary_path, "classes") or 0,
                            "classes"),
             '<p class="note">Percent. Every image queries all the others (itself excluded); R@K counts a query when '
             "one of its K nearest neighbours has its class.</p>",
             _skipped_note(summary.get("skipped"))]
    curve_file = folder / RECALL_CURVE
    if curve_file.is_file():
        curve = read_csv(curve_file, ("k", "recall"))[1]
        ks = [int_cell(r, "k", curve_file) for r in curve]
        plot = f"{prefix}_recall.png"
        line_plot(files / plot, ks, {"R@K": [as_float(r["recall"]) for r in curve]}, "Recall@K", "K", "percent",
                  log_x=len(ks) > 8)
        parts.append(f'<img class="plot" src="{link(files, plot)}" alt="Recall@K curve">')
    neighbours = folder / NEIGHBOURS
    if not neighbours.is_file():
        parts.append("<p>No queries saved in this folder: run <code>coseg retrieval evaluate … --report</code> to see "
                     "the R@K curve and each query's nearest neighbours.</p>")
        return "\n".join(parts)
    queries: dict[int, list[tuple[int, dict[str, str]]]] = {}  # order → (rank, row) of each shown neighbour
    for row in read_csv(neighbours, required_columns(NEIGHBOUR_COLUMNS))[1]:
        queries.setdefault(int_cell(row, "order", neighbours), []).append((int_cell(row, "rank", neighbours), row))
    k = max((len(v) for v in queries.values()), default=0)
    parts.append(f"<h3>Queries ({len(queries)} shown, worst first) → {k} nearest neighbours</h3>")
    parts.append('<p class="note">Ordered by the rank of the first neighbour of the query\'s class (queries with '
                 "none among the shown neighbours first). Green frame / ✓: same class as the query; red / ✗: "
                 "another class. Distances are Euclidean, in embedding units; – where neighbours.csv holds none (a "
                 "blank cell, nan or no number).</p>")
    thumbs = Thumbnails(files, prefix, max_side, tally)
    shown = []
    for order in tqdm(sorted(queries), desc="report thumbnails", unit="query", disable=not progress, leave=False):
        found = sorted(queries[order], key=lambda rank_row: rank_row[0])
        first = found[0][1]
        query_path = row_path(first, "query", folder)
        query = read_once(query_path)
        cells = [thumbs.cell(f"<b>query</b> {esc(printable(query_path.name))}<br>class {esc(first['query_class'])}",
                             printable(query_path), lambda p: write_thumbnail(p, query(), max_side))]
        for rank, row in found:
            right = row["correct"] == "1"
            mark = '<span class="mark-right">✓</span>' if right else '<span class="mark-wrong">✗</span>'
            neighbour_path = row_path(row, "path", folder)
            neighbour = read_once(neighbour_path)
            cells.append(thumbs.cell(f"{rank}. {mark} {shown_number(as_float(row['distance']), '.3f')}<br>"
                                     f"{esc(row['class'])}",
                                     printable(neighbour_path), lambda p: write_thumbnail(p, neighbour(), max_side),
                                     "right" if right else "wrong"))
        shown.append(cells)
    parts += [thumbs.unshown_note(), tiles(shown, max_side)]
    return "\n".join(parts)


SHOWN_SKIPPED = 20  # files named in a report's note of the files an evaluation left out


def _skipped_note(skipped: object) -> str:
    """HTML naming the files the evaluation left out of its scores (summary.json's ``skipped``: one "file: reason"
    each), the first :data:`SHOWN_SKIPPED` of them; empty when there are none."""
    if not isinstance(skipped, list) or not skipped:
        return ""
    more = len(skipped) - SHOWN_SKIPPED
    return (f'<p class="note">{len(skipped)} file(s) left out of the scores (summary.json lists them all):</p><ul>'
            + "".join(f"<li>{esc(str(line))}</li>" for line in skipped[:SHOWN_SKIPPED])
            + (f"<li>… and {more} more</li>" if more > 0 else "") + "</ul>")
