"""What a report shows, checked against the run's own files and the command's own output (an evaluation on groups
the model was trained on, a prediction folder whose first images predict skipped, a damaged score), and what it
leaves alone (a folder it may not enter, a file of the page's name that no report wrote)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from apps.cli import main
from coseg.models import create_model
from coseg.models.checkpoint import seen_metadata
from coseg.predict import predict_folder
from coseg.report.build import build_report, remove_report
from tests.coseg.pipeline_fixtures import ConstantModel
from tests.report.report_runs import AWKWARD_GROUPS, awkward_set, evaluation_folder, parse_page, run_files


def test_evaluation_report_warns_of_groups_the_model_was_trained_on_as_evaluate_does(tmp_path):
    """evaluate prints that the scores are not of unseen data; the report of that evaluation, the page people share,
    said nothing of it."""
    data = awkward_set(tmp_path / "data")
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1)
    checkpoint = tmp_path / "run" / "best.safetensors"
    checkpoint.parent.mkdir()
    model.save(checkpoint, metadata={"image_size": "64", **seen_metadata(AWKWARD_GROUPS[:2], AWKWARD_GROUPS[2:])})
    output = tmp_path / "eval"
    r = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--output",
                                  str(output), "--report", "--thumbnail", "16", "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "warning: 2 of the 3 evaluated groups were used to train this model" in r.output
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert (summary["trained_on"], summary["validated_on"]) == (2, 1)
    text = (output / "report.html").read_text(encoding="utf-8")
    assert ("<strong>Warning:</strong> 2 of the 3 evaluated groups were used to train this model: these scores are "
            "not of unseen data." in text)
    assert "1 of the 3 evaluated groups was this model's validation groups (used to choose its epoch)" in text
    summary.update(trained_on=0, validated_on=0)  # unseen groups: nothing to say
    (output / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    text = build_report(output, thumbnail=16, progress=False).path.read_text(encoding="utf-8")
    assert "Warning:" not in text and "validation groups" not in text


def test_prediction_report_shows_per_group_images_with_masks_when_the_first_ones_were_skipped(tmp_path):
    """A group whose first images predict could not read: --per-group N showed the masks among its first N images
    only (here none), though the group has masks to show."""
    photos = tmp_path / "photos" / "g"
    photos.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (photos / name).write_bytes(b"not a jpeg")
    rng = np.random.default_rng(0)
    for name in ("c.jpg", "d.jpg", "e.jpg"):
        cv2.imwrite(str(photos / name), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    (tmp_path / "model.safetensors").write_bytes(b"a model")
    masks = tmp_path / "masks"
    result = predict_folder(ConstantModel(0.8), 32, tmp_path / "photos", masks, torch.device("cpu"), progress=False,
                            checkpoint=tmp_path / "model.safetensors")
    assert result.written == 3 and len(result.skipped) == 2
    report = build_report(masks, per_group=2, thumbnail=16, progress=False)
    page = parse_page(report.path)
    assert len(page.images) == 2 * 2  # c and d: image | prediction
    assert sorted(row[1] for row in page.tables["table0"][1:]) == [f"g/{n}.jpg" for n in "abcde"]
    text = report.path.read_text(encoding="utf-8")
    assert "The first 2 of the 3 images with a mask." in text
    assert "<figcaption>c.jpg</figcaption>" in text and "<figcaption>d.jpg</figcaption>" in text


def lock(monkeypatch, locked: Path) -> None:
    """Make ``locked`` behave as a ``chmod 000`` folder does for a user other than root (root enters every folder):
    it cannot be listed, nothing inside it can be looked at; calls on open folders (``shutil.rmtree``) go through."""
    scandir, stat = os.scandir, os.stat

    def listing(path="."):
        if not isinstance(path, int) and Path(path) == locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    def looking(path, *args, **kwargs):
        if not isinstance(path, int) and locked in Path(os.fspath(path)).parents:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", listing)
    monkeypatch.setattr(os, "stat", looking)


def test_a_folder_nobody_may_enter_does_not_stop_the_report(tmp_path, monkeypatch):
    """``coseg report`` of a folder of runs holding one it cannot enter (another user's run, ``lost+found`` on a
    volume), or of an evaluation whose checkpoint is in such a folder: the report of the rest, not PermissionError."""
    root = tmp_path / "runs"
    run_files(root / "mine")
    evaluation = root / "eval"
    evaluation.mkdir()
    (evaluation / "per_image.csv").write_text("group,image,P,J,empty_gt\ng,a.jpg,90.0,50.0,0\n", encoding="utf-8")
    summary = {"P": 90.0, "J": 50.0, "per_group": {"g": {"P": 90.0, "J": 50.0, "images": 1}}, "images": 1,
               "checkpoint": str(tmp_path / "theirs" / "best.safetensors")}
    (evaluation / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    for locked in (root / "lost+found", tmp_path / "theirs"):
        locked.mkdir()
        lock(monkeypatch, locked)
    result = build_report(root, progress=False)
    assert result.sections == ["Evaluation: eval", "Training: mine"] and result.problems == []
    table = parse_page(result.path).tables["s1-groups"]
    assert table[1] == ["g", "1", "90.00", "50.00"]


def test_a_missing_score_in_a_thumbnails_caption_is_shown_as_in_the_tables(tmp_path):
    """A per_image.csv cell that is no number (a damaged or hand-edited file): the tables show –, the caption under
    the image said "P nan"."""
    folder = evaluation_folder(tmp_path)
    path = folder / "per_image.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    group, image, _, _, empty = lines[1].split(",")
    lines[1] = ",".join([group, image, "nan", "1.5", empty])  # the worst J: its group's first tile
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    text = build_report(folder, per_group=1, thumbnail=16, progress=False).path.read_text(encoding="utf-8")
    assert f"<figcaption>{image}<br>P – · J 1.5</figcaption>" in text and "P nan" not in text


def test_a_file_the_report_did_not_write_is_never_replaced_nor_removed(tmp_path):
    """``--output`` naming a file of the run (config.yaml) or a page of the user's replaced it without a word, and a
    report.html of the user's in an evaluation folder was removed by the next evaluation, though the files folder
    beside a page was already checked for files no report wrote."""
    run = run_files(tmp_path / "run")
    config = (run / "config.yaml").read_bytes()
    notes = tmp_path / "notes.html"
    notes.write_text("<!DOCTYPE html>\n<p>my notes on the run</p>\n", encoding="utf-8")
    for page in (run / "config.yaml", notes):
        with pytest.raises(ValueError, match="not a page `coseg report` wrote, which the report would replace"):
            build_report(run, output=page, progress=False)
    assert (run / "config.yaml").read_bytes() == config and "my notes" in notes.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.html", "run"]
    report = build_report(run, progress=False).path
    assert build_report(run, progress=False).path == report  # a report replaces the one before
    remove_report(run)
    assert not report.exists() and not (run / "report_files").exists()
    report.write_text("<!DOCTYPE html>\n<p>my own page</p>\n", encoding="utf-8")
    remove_report(run)
    assert report.read_text(encoding="utf-8") == "<!DOCTYPE html>\n<p>my own page</p>\n"


def test_a_model_file_recorded_with_its_digest_tells_when_it_changed(tmp_path):
    from coseg.report.files import model_file_changed, record_model_file

    model, folder = tmp_path / "run" / "best.safetensors", tmp_path / "eval"
    model.parent.mkdir()
    model.write_bytes(b"model one")
    record: dict = {}
    record_model_file(record, model, folder)
    assert record["checkpoint_sha256"] == hashlib.sha256(b"model one").hexdigest()
    assert model_file_changed(record, folder) is None
    model.write_bytes(b"model two")
    assert model_file_changed(record, folder) == model
    assert model_file_changed({k: v for k, v in record.items() if k != "checkpoint_sha256"}, folder) is None
    model.unlink()
    assert model_file_changed(record, folder) is None  # gone: nothing to compare


@pytest.mark.parametrize("kind", ["evaluation", "retrieval", "predictions"])
def test_a_report_says_when_the_model_file_changed_since_its_results(tmp_path, kind):
    """A resumed training writes over best.safetensors after an evaluation: the report of that evaluation says its
    scores are of the earlier model (was: the old scores beside the new run's curves, without a word)."""
    from coseg.report.files import PREDICT_RECORD, record_model_file
    from tests.report.test_retrieval_report import retrieval_evaluation

    if kind == "evaluation":
        folder = evaluation_folder(tmp_path)
        record_file = folder / "summary.json"
        model = tmp_path / "run" / "best.safetensors"
    elif kind == "retrieval":
        folder = retrieval_evaluation(tmp_path)[0]
        record_file = folder / "summary.json"
        model = tmp_path / "run" / "best.safetensors"
    else:
        from tests.coseg.files import write_rgb

        write_rgb(tmp_path / "in" / "g" / "a.png", np.full((8, 8, 3), 200, np.uint8))
        model = tmp_path / "model.safetensors"
        model.write_bytes(b"stands for a model")
        folder = tmp_path / "masks"
        predict_folder(ConstantModel(0.9), 16, tmp_path / "in", folder, torch.device("cpu"), progress=False,
                       checkpoint=model)
        record_file = folder / PREDICT_RECORD
    model.write_bytes(b"model one")
    record = json.loads(record_file.read_text())
    record_model_file(record, model, folder)
    record_file.write_text(json.dumps(record))
    first = build_report(folder, thumbnail=32, progress=False).path.read_text(encoding="utf-8")
    assert "has changed since" not in first
    model.write_bytes(b"model two")
    second = build_report(folder, thumbnail=32, progress=False).path.read_text(encoding="utf-8")
    what = "masks" if kind == "predictions" else "scores"
    assert f"has changed since: these {what} are of the model" in second
