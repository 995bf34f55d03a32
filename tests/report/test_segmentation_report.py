import csv
import functools
import math
import random
from urllib.parse import unquote

import cv2
import pytest
import torch

from coseg.data import find_samples
from coseg.evaluate import evaluate_samples, write_evaluation
from coseg.report.build import build_report
from coseg.report.files import PREDICTIONS, as_float
from coseg.report.segmentation import ImageRow, worst_first
from tests.coseg.pipeline_fixtures import ConstantModel
from tests.report.report_runs import AWKWARD_GROUPS, evaluation_folder, parse_page, run_files


def naive_worst_first(rows):
    """Explicit comparison: rows with a J before rows without; lower J first, then lower P; no J: lower P first;
    a missing P (NaN) after every P."""
    def compare_numbers(x, y):
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) - math.isnan(y)
        return (x > y) - (x < y)

    def compare(a, b):
        if math.isnan(a.J) != math.isnan(b.J):
            return 1 if math.isnan(a.J) else -1
        if not math.isnan(a.J) and a.J != b.J:
            return compare_numbers(a.J, b.J)
        return compare_numbers(a.P, b.P)
    return sorted(rows, key=functools.cmp_to_key(compare))


def scores(rows):
    """(J, P) of each row, NaN as None (NaN != NaN)."""
    return [tuple(None if math.isnan(v) else v for v in (r.J, r.P)) for r in rows]


def test_worst_first_order_matches_naive_comparison():
    rows = [ImageRow("g", f"i{n}", p, j, math.isnan(j)) for n, (p, j) in enumerate(
        [(90, 50), (80, 50), (99, math.nan), (40, math.nan), (95, 10), (70, 90), (85, 10)])]
    ordered = worst_first(rows)
    assert [r.image for r in ordered] == [r.image for r in naive_worst_first(rows)]
    assert [r.image for r in ordered] == ["i6", "i4", "i1", "i0", "i5", "i3", "i2"]


def test_worst_first_order_with_missing_scores_is_total_and_matches_naive_comparison():
    """Missing (NaN) scores, as a damaged per_image.csv gives, sort last among their equals, whatever the order the
    rows come in."""
    rng = random.Random(0)
    values = [math.nan, 0.0, 10.0, 50.0, 50.0, 100.0]
    rows = [ImageRow("g", f"i{n}", rng.choice(values), rng.choice(values), False) for n in range(60)]
    expected = scores(naive_worst_first(rows))
    assert expected[-1] == (None, None) and expected[0][0] == 0.0
    for _ in range(20):
        rng.shuffle(rows)
        assert scores(worst_first(rows)) == expected


def test_rows_of_a_damaged_per_image_csv_are_shown_worst_first_missing_scores_last(tmp_path):
    folder = evaluation_folder(tmp_path)
    path = folder / "per_image.csv"
    with open(path, newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    p, j = lines[0].index("P"), lines[0].index("J")
    for n, (p_cell, j_cell) in enumerate([("nan", "3.5"), ("", "nan"), ("x", "3.5"), ("50", ""), ("nan", "nan"),
                                          ("20", "3.5")], start=1):
        lines[n][p], lines[n][j] = p_cell, j_cell
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(lines)
    result = build_report(folder, per_group=1, thumbnail=16, progress=False)
    assert not result.problems
    shown = parse_page(result.path).tables["s2-images"][1:]
    rows = [ImageRow(r[0], r[1], as_float(r[2]), as_float(r[3]), False) for r in shown]
    assert [(r.group, r.image) for r in naive_worst_first(rows)] == [(r[0], r[1]) for r in shown]
    assert [r[2:4] for r in shown[-3:]] == [["50.00", "–"], ["–", "–"], ["–", "–"]]


def test_evaluation_report(tmp_path):
    folder = evaluation_folder(tmp_path)
    result = build_report(folder, per_group=2, thumbnail=48, progress=False)
    assert result.path == folder / "report.html" and result.files == folder / "report_files"
    assert result.sections == ["Training: run", "Evaluation: eval"] and not result.problems  # run via checkpoint
    page = parse_page(result.path)
    text = result.path.read_text(encoding="utf-8")
    assert page.scripts == 1 and not page.external
    for name in AWKWARD_GROUPS:
        assert name not in text or "<" not in name  # raw markup never reaches the page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;my data&gt; &amp; more" in text
    # every image is a file beside the page: 2 plots, then 3 groups x 2 worst images x (image, truth, prediction)
    assert len(page.images) == 2 + 3 * 2 * 3
    for src in page.images:
        picture = cv2.imread(str(folder / src))
        assert picture is not None and (src.endswith(("loss.png", "val.png")) or max(picture.shape[:2]) <= 48)
    # tables worst first, the same order as a naive sort of per_image.csv
    with open(folder / "per_image.csv", newline="", encoding="utf-8") as f:
        rows = [ImageRow(r["group"], r["image"], float(r["P"]), float(r["J"]), False) for r in csv.DictReader(f)]
    shown = [(r[0], r[1]) for r in page.tables["s2-images"][1:]]
    assert shown == [(r.group, r.image) for r in naive_worst_first(rows)]
    group_j = [float(r[3]) for r in page.tables["s2-groups"][1:]]
    assert group_j == sorted(group_j) and {r[0] for r in page.tables["s2-groups"][1:]} == set(AWKWARD_GROUPS)


def test_report_without_saved_predictions_has_tables_only(tmp_path):
    folder = evaluation_folder(tmp_path)
    for saved in sorted((folder / "predictions").rglob("*"), reverse=True):
        saved.unlink() if saved.is_file() else saved.rmdir()
    result = build_report(folder, output=tmp_path / "elsewhere" / "mine.html", progress=False)
    assert result.files == tmp_path / "elsewhere" / "mine_files"
    page = parse_page(result.path)
    assert len(page.images) == 2 and "coseg evaluate … --report" in result.path.read_text(encoding="utf-8")
    assert all((result.path.parent / src).is_file() for src in page.images)


def test_missing_image_becomes_a_note_not_a_broken_link(tmp_path):
    folder = evaluation_folder(tmp_path)
    for image in (tmp_path / "data" / "images" / "plain group").iterdir():
        image.unlink()
    result = build_report(folder, per_group=1, progress=False)
    page = parse_page(result.path)
    assert all((folder / src).is_file() for src in page.images)
    assert len(page.images) == 2 + 2 * 3 and "not shown" in result.path.read_text(encoding="utf-8")


def test_nothing_to_report_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="nothing to report"):
        build_report(tmp_path, progress=False)
    assert not list(tmp_path.iterdir())  # no empty report_files/ left in the folder
    with pytest.raises(ValueError, match="not a folder"):
        build_report(tmp_path / "missing", progress=False)


def test_prediction_report_with_a_file_name_that_is_not_utf8(tmp_path):
    import os
    from pathlib import Path

    import numpy as np

    from coseg.data import write_png_atomic
    from coseg.predict import output_path
    import json

    from coseg.predict import mask_settings, prediction_record

    photos = tmp_path / "photos" / "g"
    photos.mkdir(parents=True)
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8, so Python holds a surrogate escape
    picture = np.zeros((20, 30, 3), np.uint8)
    picture[5:15, 10:20] = 200
    write_png_atomic(photos / name, picture)
    masks = tmp_path / "masks"
    write_png_atomic(output_path(masks, Path("g") / name), picture[..., 0] > 0)
    (tmp_path / "model.safetensors").write_bytes(b"a model")
    record = prediction_record(tmp_path / "photos", masks, tmp_path / "model.safetensors",
                               mask_settings(32, True, None, False, None, None, None))
    (masks / "predict.json").write_text(json.dumps(record))
    result = build_report(masks, thumbnail=32, progress=False)
    text = result.path.read_text(encoding="utf-8")
    assert "caf\\xe9.png" in text and len(parse_page(result.path).images) == 2


def test_corrupt_result_files_spoil_only_their_own_section(tmp_path):
    folder = evaluation_folder(tmp_path)
    index = folder / "predictions" / "index.csv"
    index.write_text(index.read_text().rstrip("\n").rsplit(",", 2)[0])  # truncated last row
    result = build_report(folder, per_group=3, thumbnail=32, progress=False)
    assert not result.problems and "no saved prediction" in result.path.read_text(encoding="utf-8")
    assert len(parse_page(result.path).images) == 2 + 3 * 3 * 3 - 3  # the truncated row's image: a note
    summary = folder / "summary.json"
    summary.write_text(summary.read_text()[:40])
    result = build_report(folder.parent, progress=False)  # the run holding the evaluation
    assert result.sections == ["Training: run", "Evaluation: eval"]
    [(heading, reason)] = result.problems
    assert heading == "Evaluation: eval" and "summary.json: cannot read it" in reason


def test_report_written_again_replaces_the_earlier_files(tmp_path):
    folder = evaluation_folder(tmp_path)
    build_report(folder, per_group=3, thumbnail=32, progress=False)
    result = build_report(folder, per_group=1, thumbnail=32, progress=False)
    shown = {src.split("/")[-1] for src in parse_page(result.path).images}
    assert sorted(p.name for p in result.files.iterdir()) == sorted(shown) and len(shown) == 2 + 3 * 3


def test_interrupted_report_leaves_the_earlier_one_whole(tmp_path, monkeypatch):
    from coseg.report import segmentation
    from coseg.report.thumbnails import write_thumbnail

    folder = evaluation_folder(tmp_path)
    earlier = build_report(folder, per_group=2, thumbnail=32, progress=False)
    text = earlier.path.read_text(encoding="utf-8")
    killed = folder / ".report_files.tmp-x1" / "report_files"  # what a report killed with -9 left
    killed.mkdir(parents=True)
    (killed / "s2_00001.png").write_bytes(b"")
    written = []

    def interrupted(*args, **kwargs):  # Ctrl-C at the fourth thumbnail
        written.append(args[0])
        if len(written) == 4:
            raise KeyboardInterrupt
        write_thumbnail(*args, **kwargs)

    monkeypatch.setattr(segmentation, "write_thumbnail", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_report(folder, per_group=3, thumbnail=32, progress=False)
    assert earlier.path.read_text(encoding="utf-8") == text
    assert all((folder / src).is_file() for src in parse_page(earlier.path).images)
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # nothing staged is left


def test_files_folder_holding_other_files_is_left_alone(tmp_path):
    folder = evaluation_folder(tmp_path)
    notes = folder / "report_files" / "notes.txt"  # a folder of that name the user keeps other files in
    notes.parent.mkdir()
    notes.write_text("mine")
    with pytest.raises(ValueError, match=r"report_files holds files no report wrote \(notes.txt\)"):
        build_report(folder, thumbnail=16, progress=False)
    assert notes.read_text() == "mine" and not (folder / "report.html").exists()
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def test_evaluation_of_an_ensemble_shows_its_members_curves(tmp_path):
    folder = evaluation_folder(tmp_path)
    for member in ("member1", "member0"):
        run_files(folder.parent / member)
    result = build_report(folder, thumbnail=16, progress=False)
    assert result.sections == ["Training: run", "Training: member0", "Training: member1", "Evaluation: eval"]
    assert not result.problems and sorted(p.name for p in result.files.glob("s[23]_*")) == [
        "s2_loss.png", "s2_val.png", "s3_loss.png", "s3_val.png"]


def test_sections_of_an_ensemble_with_more_than_ten_members_are_in_numeric_order(tmp_path):
    folder = evaluation_folder(tmp_path)
    for member in ("member10", "member2", "member11", "member1", "member0"):
        run_files(folder.parent / member)
    result = build_report(folder, thumbnail=16, progress=False)
    assert result.sections == ["Training: run"] + [f"Training: member{n}" for n in (0, 1, 2, 10, 11)] + [
        "Evaluation: eval"]  # was: member0, member1, member10, member11, member2


def test_evaluation_report_shows_the_thumbnails_of_a_project_moved_with_its_data(tmp_path):
    import shutil

    evaluation_folder(tmp_path / "project")
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "project", moved)  # the data and the run beside it: index.csv's absolute paths are gone
    result = build_report(moved / "run", per_group=2, thumbnail=16, progress=False)
    text = result.path.read_text(encoding="utf-8")
    assert not result.problems and "not shown" not in text  # was: every image "not shown (cannot read file)"
    assert len(parse_page(result.path).images) == 2 + 3 * 2 * 3


def test_prediction_index_without_relative_paths_is_still_read(tmp_path):
    folder = evaluation_folder(tmp_path)
    index = folder / PREDICTIONS / "index.csv"
    with open(index, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(index, "w", newline="", encoding="utf-8") as f:  # as written before the *_relative columns
        writer = csv.DictWriter(f, ["group", "image", "image_path", "mask_path", "any_nonzero", "prediction"],
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    result = build_report(folder, per_group=2, thumbnail=16, progress=False)
    text = result.path.read_text(encoding="utf-8")
    assert not result.problems and "not shown" not in text and len(parse_page(result.path).images) == 2 + 3 * 2 * 3


def test_thumbnail_size_below_one_pixel_is_refused(tmp_path):
    with pytest.raises(ValueError, match="thumbnail must be >= 1 pixel, got 0"):
        build_report(evaluation_folder(tmp_path), thumbnail=0, progress=False)


def test_page_name_needing_url_quoting_and_unwritable_places(tmp_path):
    folder = evaluation_folder(tmp_path)
    result = build_report(folder, output=tmp_path / "run #3 50%.html", per_group=1, progress=False)
    images = parse_page(result.path).images
    assert images[0].startswith("run%20%233%2050%25_files/") and all((tmp_path / unquote(s)).is_file() for s in images)
    (tmp_path / "a file").write_text("")
    with pytest.raises(ValueError, match="cannot write the report there"):
        build_report(folder, output=tmp_path / "a file" / "report.html", progress=False)
    (tmp_path / "taken.html").mkdir()
    with pytest.raises(ValueError, match="taken.html: cannot write the report there"):
        build_report(folder, output=tmp_path / "taken.html", progress=False)


def _evaluate_into(output, data):
    evaluation = evaluate_samples(ConstantModel(0.9), find_samples(data, "folders").samples, 64, torch.device("cpu"),
                                  progress=False, predictions=output / PREDICTIONS)
    write_evaluation(evaluation, output)


def test_evaluation_report_draws_an_exif_rotated_photo_the_way_its_ground_truth_is_drawn(tmp_path):
    import numpy as np

    from coseg.data import write_png_atomic
    from tests.coseg.files import write_exif_jpeg

    stored = np.full((40, 120, 3), 30, np.uint8)
    stored[:, :40] = 220  # the object: the left third of the photo as stored (it is viewed turned by 90°)
    write_exif_jpeg(tmp_path / "data" / "images" / "g" / "rot.jpg", stored, orientation=6)
    write_png_atomic(tmp_path / "data" / "masks" / "g" / "rot.png", stored[..., 0] > 128)
    _evaluate_into(tmp_path / "ev", tmp_path / "data")
    result = build_report(tmp_path / "ev", thumbnail=120, progress=False)
    photo, truth, prediction = (cv2.imread(str(result.path.parent / src)) for src in parse_page(result.path).images)
    assert photo.shape[:2] == truth.shape[:2] == prediction.shape[:2] == (40, 120)  # not stretched to 120 x 40
    darkened = (abs(0.45 * photo - truth) <= 2).all(axis=2)  # overlay darkens the background, tints the object
    assert darkened[:, 43:].all() and not darkened[:, 3:37].any()  # the tint lies on the object, as the mask says


def test_evaluation_without_saved_predictions_drops_the_index_of_an_earlier_one(tmp_path):
    class Broken(torch.nn.Module):
        def predict_group(self, *args, **kwargs):
            raise RuntimeError("interrupted")

    folder = evaluation_folder(tmp_path)
    index = folder / PREDICTIONS / "index.csv"
    samples = find_samples(tmp_path / "data", "icoseg").samples
    earlier = index.read_bytes()
    with pytest.raises(RuntimeError, match="interrupted"):  # stopped part-way: the earlier evaluation stays whole
        evaluate_samples(Broken(), samples, 64, torch.device("cpu"), progress=False, predictions=index.parent)
    assert index.read_bytes() == earlier and (folder / "summary.json").is_file()
    folder = evaluation_folder(tmp_path / "again")
    evaluation = evaluate_samples(ConstantModel(0.2), find_samples(tmp_path / "again" / "data", "icoseg").samples,
                                  64, torch.device("cpu"), progress=False)
    evaluation.summary["checkpoint"] = str(folder.parent / "best.safetensors")
    write_evaluation(evaluation, folder)  # evaluated again without --report
    assert not (folder / PREDICTIONS / "index.csv").exists()
    page = parse_page(build_report(folder, progress=False).path)
    assert len(page.images) == 2  # the run's two plots; no masks of the earlier evaluation beside the new scores


def test_evaluation_report_of_files_whose_paths_are_not_utf8(tmp_path):
    import os

    import numpy as np

    from coseg.data import write_png_atomic

    picture = np.zeros((20, 30, 3), np.uint8)
    picture[5:15, 10:20] = 200
    for name in (os.fsdecode(b"caf\xe9"), "plain 100%"):
        write_png_atomic(tmp_path / "data" / "images" / "g" / f"{name}.png", picture)
        write_png_atomic(tmp_path / "data" / "masks" / "g" / f"{name}.png", picture[..., 0] > 0)
    _evaluate_into(tmp_path / "ev", tmp_path / "data")
    result = build_report(tmp_path / "ev", thumbnail=32, progress=False)
    text = result.path.read_text(encoding="utf-8")
    assert "not shown" not in text and len(parse_page(result.path).images) == 2 * 3


@pytest.mark.parametrize("name", [b"/data/caf\xe9 100%.png", "/données/été 50%25.jpg".encode(), b"plain/a b.png",
                                  b"/x/%41,\"q\".png"])
def test_path_cells_give_back_the_exact_path(name):
    import os
    from pathlib import Path

    from coseg.report.files import cell_path, path_cell

    path = Path(os.fsdecode(name))
    cell = path_cell(path)
    assert cell.isascii() and cell_path(cell) == path and os.fsencode(cell_path(cell)) == name


def test_prediction_record_without_its_input_folder_is_named_in_the_reason(tmp_path):
    (tmp_path / "predict.json").write_text('{"checkpoint": "model.safetensors"}')
    [(_, reason)] = build_report(tmp_path, progress=False).problems
    assert reason.endswith("predict.json: no input folder named")


def test_a_shrunk_mask_stays_on_its_thumbnails_pixels():
    """The image's channels hold each pixel's x and y, so a thumbnail pixel shows which point it samples; the shrunk
    mask must be the mask at that point (plain nearest neighbour took the pixel at the corner, half a pixel off)."""
    import numpy as np

    from coseg.report.thumbnails import shrink

    yy, xx = np.mgrid[0:200, 0:200]  # shrunk 3.125 times: OpenCV's plain nearest neighbour differs only there
    checkerboard = ((yy + xx) % 2).astype(bool)
    small = shrink(np.stack([xx, yy, np.zeros_like(xx)], -1).astype(np.uint8), 64)
    x, y = (np.round(small[..., c].astype(float)).astype(int) for c in (0, 1))
    assert np.array_equal(shrink(checkerboard, 64), checkerboard[y, x])


def test_prediction_report_says_which_masks_predict_did_not_write(tmp_path):
    """An image predict skipped (unreadable) or has not reached has no mask: the note says so, not "cannot read
    file (No such file or directory)" beside a photo that is there; a damaged mask file is named as the mask."""
    from coseg.predict import predict_folder
    from tests.coseg.pipeline_fixtures import odd_sized_set

    photos = odd_sized_set(tmp_path / "data") / "images"
    (photos / "g1" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "model.safetensors").write_bytes(b"a model")
    masks = tmp_path / "masks"
    predict_folder(ConstantModel(0.8), 64, photos, masks, torch.device("cpu"), progress=False,
                   checkpoint=tmp_path / "model.safetensors")
    (masks / "g0" / "im1.png").write_bytes(b"cut short")
    text = build_report(masks, thumbnail=32, progress=False).path.read_text(encoding="utf-8")
    assert "cannot read file" not in text
    assert text.count("no mask written (predict skipped this image or has not reached it)") == 1
    assert "mask unreadable (" in text
