"""A report section counts the pictures it could not draw (an image gone, a mask replaced) in one note above them,
with the first reason: among hundreds of groups a caption saying "not shown" is easily missed."""
from __future__ import annotations

import csv
import re

import cv2
import numpy as np
import torch

from coseg.predict import predict_folder
from coseg.report.build import build_report
from coseg.report.files import cell_path
from tests.coseg.files import write_rgb
from tests.coseg.pipeline_fixtures import ConstantModel
from tests.report.report_runs import evaluation_folder
from tests.report.test_retrieval_report import retrieval_evaluation

NOTE = re.compile(r"<strong>Not shown:</strong> (\d+) of the (\d+) pictures below \(each caption says why; the "
                  r"first: ([^<]*)\)")


def sections(page: str) -> dict[str, str]:
    """Each section's body by its heading."""
    return dict(re.findall(r"<h2>([^<]*)</h2>(.*?)</section>", page, re.DOTALL))


def counted(body: str) -> tuple[int, int, str]:
    """(pictures not shown, pictures, first reason) of the section's note."""
    [(unshown, total, first)] = NOTE.findall(body)
    return int(unshown), int(total), first


def test_evaluation_counts_the_pictures_it_could_not_draw(tmp_path):
    folder = evaluation_folder(tmp_path)
    page = build_report(folder, per_group=2, thumbnail=16, progress=False).path.read_text(encoding="utf-8")
    assert not NOTE.search(page)
    for image in (tmp_path / "data" / "images" / "plain group").iterdir():  # its 2 worst: 2 × 3 pictures
        image.unlink()
    body = sections(build_report(folder, per_group=2, thumbnail=16, progress=False).path.read_text(
        encoding="utf-8"))["Evaluation: eval"]
    unshown, total, first = counted(body)
    assert (unshown, total) == (body.count("<br>not shown: "), 3 * 2 * 3) and unshown == 2 * 3
    assert "plain group" in first and body.index("Not shown:") < body.index("<figure")


def test_retrieval_counts_the_neighbours_it_could_not_draw(tmp_path):
    output, *_ = retrieval_evaluation(tmp_path, queries=3)
    with open(output / "neighbours.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    gone = rows[1]["path"]
    cell_path(gone).unlink()
    body = sections(build_report(output, thumbnail=16, progress=False).path.read_text(
        encoding="utf-8"))["Retrieval evaluation: eval"]
    unshown, total, first = counted(body)
    shown_as = sum(r["path"] == gone for r in rows) + len({r["order"] for r in rows if r["query"] == gone})
    assert (unshown, total) == (body.count("<br>not shown: "), 3 * (1 + 5)) and unshown == shown_as > 0
    assert cell_path(gone).name in first


def test_predictions_count_the_masks_they_could_not_draw(tmp_path):
    photos = tmp_path / "photos"
    for n in range(3):
        write_rgb(photos / "g" / f"p{n}.png", np.zeros((24, 40, 3), np.uint8))
    (tmp_path / "model.safetensors").write_bytes(b"a model")
    masks = tmp_path / "masks"
    predict_folder(ConstantModel(0.8), 32, photos, masks, torch.device("cpu"), progress=False,
                   checkpoint=tmp_path / "model.safetensors")  # writes predict.json
    cv2.imwrite(str(masks / "g" / "p1.png"), np.full((40, 24), 255, np.uint8))  # replaced by another shape
    body = sections(build_report(masks, thumbnail=16, progress=False).path.read_text(
        encoding="utf-8"))["Predictions: masks"]
    assert counted(body)[:2] == (1, 6) and "p1.png: a mask of 24×40 pixels" in counted(body)[2]


def test_the_result_and_the_terminal_count_the_pictures_not_shown(tmp_path):
    """`coseg report`'s terminal summary said nothing of pictures not drawn; it counts them, with the first reason,
    as the ReportResult lists them (every section's)."""
    from click.testing import CliRunner

    from apps.cli import main

    folder = evaluation_folder(tmp_path)
    for image in (tmp_path / "data" / "images" / "plain group").iterdir():
        image.unlink()
    result = build_report(folder, per_group=2, thumbnail=16, progress=False)
    body = sections(result.path.read_text(encoding="utf-8"))["Evaluation: eval"]
    assert len(result.unshown) == counted(body)[0] == 6 and result.unshown[0] == counted(body)[2]
    out = CliRunner().invoke(main, ["report", str(folder), "--per-group", "2", "--thumbnail", "16"]).output
    assert f"not shown: 6 picture(s), each caption says why (the first: {result.unshown[0]})" in out
