"""Reports of awkward results: a log value between gaps in a long run, a thumbnail that cannot be drawn (its
caption kept), a predicted mask replaced after the evaluation (or predict) by one of another shape."""
import csv
import html
import math
import re

import cv2
import numpy as np
import torch

from coseg.data import DataFileError
from coseg.predict import predict_folder
from coseg.report.build import build_report
from coseg.report.files import cell_path
from coseg.report.plots import line_plot
from coseg.report.segmentation import Thumbnails
from tests.coseg.files import write_exif_jpeg, write_rgb
from tests.coseg.pipeline_fixtures import ConstantModel
from tests.report.report_runs import evaluation_folder, parse_page
from tests.report.test_retrieval_report import retrieval_evaluation

BLUE = np.array([180, 119, 31])  # matplotlib's first line colour (#1f77b4) in OpenCV's BGR order


def blue_pixels(path) -> int:
    image = cv2.imread(str(path)).astype(int)
    return int((np.abs(image - BLUE).sum(axis=2) < 30).sum())


def test_values_between_gaps_of_a_long_run_are_drawn(tmp_path):
    """40 epochs with J on every other one (or a column a resumed run added in its last epoch): no line joins two
    values, so each must be drawn as a dot; before, only the legend showed the series."""
    epochs = list(range(1, 41))
    line_plot(tmp_path / "none.png", epochs, {"J": [math.nan] * 40}, "t", "epoch", "percent")
    line_plot(tmp_path / "gaps.png", epochs, {"J": [50.0 + e if e % 2 else math.nan for e in epochs]}, "t", "epoch",
              "percent")
    line_plot(tmp_path / "last.png", epochs, {"J": [math.nan] * 39 + [60.0]}, "t", "epoch", "percent")
    legend_only = blue_pixels(tmp_path / "none.png")
    assert blue_pixels(tmp_path / "gaps.png") > legend_only + 20 * 5  # 20 dots of several pixels each
    assert blue_pixels(tmp_path / "last.png") > legend_only + 5


def _unreadable(path):
    raise DataFileError(path, "cannot read file (No such file or directory)")


def test_a_thumbnail_not_drawn_keeps_its_caption(tmp_path):
    thumbs = Thumbnails(tmp_path, "s1", 32)
    figure = thumbs.cell("3. ✗ 0.500<br>class &lt;dog&gt;", "/data/dog 1.png", _unreadable, "wrong")
    assert "3. ✗ 0.500<br>class &lt;dog&gt;" in figure and "not shown" in figure and "No such file" in figure
    assert not list(tmp_path.iterdir())


def test_a_missing_neighbour_keeps_its_rank_mark_and_class_in_the_report(tmp_path):
    output, *_ = retrieval_evaluation(tmp_path, queries=3)
    with open(output / "neighbours.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    queries = {r["query"] for r in rows}
    gone = next(r["path"] for r in rows if r["path"] not in queries)
    cell_path(gone).unlink()
    page = build_report(output, thumbnail=32, progress=False).path.read_text(encoding="utf-8")
    captions = re.findall(r"<figcaption>((?:(?!</figcaption>).)*)<br>not shown", page)
    expected = [r for r in rows if r["path"] == gone]
    assert len(captions) == len(expected)
    for caption, row in zip(captions, expected):
        mark = "mark-right" if row["correct"] == "1" else "mark-wrong"
        assert caption.startswith(f'{row["rank"]}. <span class="{mark}">')
        assert caption.endswith(f"{float(row['distance']):.3f}<br>{html.escape(row['class'])}")


def test_a_missing_image_keeps_its_scores_in_the_grid(tmp_path):
    folder = evaluation_folder(tmp_path)
    for image in (tmp_path / "data" / "images" / "plain group").iterdir():
        image.unlink()
    page = build_report(folder, per_group=1, progress=False).path.read_text(encoding="utf-8")
    [caption] = re.findall(r"<figcaption>([^<]*<br>P [^<]*)<br>not shown", page)
    assert re.fullmatch(r"img\d+\.\w+<br>P \d+\.\d · J \d+\.\d", caption)


def test_a_prediction_replaced_by_one_of_another_shape_is_not_shown_stretched(tmp_path):
    folder = evaluation_folder(tmp_path)
    replaced = sorted((folder / "predictions").rglob("*.png"))[0]
    cv2.imwrite(str(replaced), np.full((8, 40), 255, np.uint8))  # the ground truth is 64 × 64
    result = build_report(folder, progress=False)
    page = result.path.read_text(encoding="utf-8")
    assert not result.problems and page.count("not shown") == 1
    [reason] = re.findall(r"not shown: ([^<]*)</figcaption>", page)
    assert replaced.name in reason and "a mask of 40×8 pixels for a picture of 64×64" in reason


def test_a_predict_mask_replaced_by_one_of_another_shape_is_not_shown_stretched(tmp_path):
    """predict --report's masks, of their (EXIF-rotated) photos' size, are drawn; one replaced since is named."""
    photos = tmp_path / "photos"
    picture = np.zeros((24, 40, 3), np.uint8)
    write_exif_jpeg(photos / "g" / "turned.jpg", picture, orientation=6)  # viewed 40 × 24 (H × W)
    for n in range(2):
        write_rgb(photos / "g" / f"plain{n}.png", picture)
    (tmp_path / "model.safetensors").write_bytes(b"a model")
    masks = tmp_path / "masks"
    predict_folder(ConstantModel(0.8), 32, photos, masks, torch.device("cpu"), progress=False,
                   checkpoint=tmp_path / "model.safetensors")
    assert len(parse_page(build_report(masks, thumbnail=32, progress=False).path).images) == 6
    assert "not shown" not in (masks / "report.html").read_text(encoding="utf-8")
    cv2.imwrite(str(masks / "g" / "plain1.png"), np.full((40, 24), 255, np.uint8))
    page = build_report(masks, thumbnail=32, progress=False).path.read_text(encoding="utf-8")
    [reason] = re.findall(r"not shown: ([^<]*)</figcaption>", page)
    assert "plain1.png: a mask of 24×40 pixels for a picture of 40×24" in reason
