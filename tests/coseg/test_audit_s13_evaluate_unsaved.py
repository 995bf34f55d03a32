"""evaluate --report: a predicted mask that cannot be saved loses only that mask, not the evaluation."""
from __future__ import annotations

import csv
import errno
import json
from pathlib import Path

import pytest
import torch

from coseg.data import find_samples
from coseg.evaluate import evaluate_samples, write_evaluation
from coseg.models import create_model
from coseg.report.build import build_report
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set
from tests.coseg.test_train_run import coseg

CPU = torch.device("cpu")


def evaluated(root: Path, predictions: Path):
    return evaluate_samples(ConstantModel(0.9), find_samples(root, "icoseg").samples, 64, CPU, progress=False,
                            predictions=predictions)


def test_a_file_where_a_group_folder_goes_keeps_the_scores(tmp_path: Path) -> None:
    """out/predictions/g0 a file: g0's masks cannot be saved, yet every image is scored and the rest is written;
    the index lists only the saved masks, so the report built from it works."""
    root, out = odd_sized_set(tmp_path / "data"), tmp_path / "out"
    (out / "predictions").mkdir(parents=True)
    (out / "predictions" / "g0").write_text("not a folder")
    ev = evaluated(root, out / "predictions")
    assert ev.summary["images"] == 3 and ev.skipped == []
    assert [sample.image.name for sample, _ in ev.predicted] == ["im0.jpg"]  # g1's one image
    assert sorted(image for image, _ in ev.unsaved) == [str(root / "images" / "g0" / f"im{i}.jpg") for i in (0, 1)]
    assert all(f"File exists: {out / 'predictions' / 'g0'})" in reason for _, reason in ev.unsaved), ev.unsaved
    write_evaluation(ev, out)
    summary = json.loads((out / "summary.json").read_text())
    assert [entry["file"] for entry in summary["unsaved_predictions"]] == [image for image, _ in ev.unsaved]
    assert summary["skipped"] == 0 and summary["skipped_files"] == []
    with open(out / "predictions" / "index.csv", newline="") as f:
        assert [(row["group"], row["image"]) for row in csv.DictReader(f)] == [("g1", "im0.jpg")]
    built = build_report(out, progress=False)
    assert built.problems == []
    html = built.path.read_text()
    assert html.count("no saved prediction") == 2


def test_a_folder_at_a_mask_path_is_listed(tmp_path: Path) -> None:
    root, predictions = odd_sized_set(tmp_path / "data"), tmp_path / "out" / "predictions"
    (predictions / "g1" / "im0.png").mkdir(parents=True)
    ev = evaluated(root, predictions)
    assert ev.summary["images"] == 3 and len(ev.predicted) == 2
    assert len(ev.unsaved) == 1 and str(predictions / "g1" / "im0.png") in ev.unsaved[0][1]


def test_an_output_wide_write_error_stops_the_evaluation(tmp_path: Path, monkeypatch) -> None:
    def full(path, array):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("coseg.evaluate.write_png_atomic", full)
    with pytest.raises(OSError, match="No space left"):
        evaluated(odd_sized_set(tmp_path / "data"), tmp_path / "out" / "predictions")


def test_the_cli_prints_the_unsaved_masks(tmp_path: Path) -> None:
    root, out = odd_sized_set(tmp_path / "data"), tmp_path / "out"
    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=0).save(model, {"image_size": "64"})
    (out / "predictions").mkdir(parents=True)
    (out / "predictions" / "g0").write_text("not a folder")
    code, output = coseg("evaluate", "--checkpoint", model, "--data", root, "--output", out, "--report",
                         "--no-colour-cut", "--edge-radius", 0, "--quiet")
    assert code == 0, output
    lines = output.splitlines()
    at = lines.index("could not save 2 predicted mask(s) (their images are scored; the report shows no prediction "
                     "for them):")
    assert all(f"File exists: {out / 'predictions' / 'g0'})" in line for line in lines[at + 1: at + 3]), output
    assert (out / "report.html").is_file() and json.loads((out / "summary.json").read_text())["images"] == 3
