"""An evaluation rerun into the folder of an earlier one (`evaluate --report`): stopped at any point, the folder holds
the earlier evaluation whole, or the new one, or (stopped while the new masks are moved in) no summary.json; never
the earlier summary beside missing or other masks."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

import coseg.evaluate as evaluate_module
from coseg.atomic import TEMPORARY_MARK
from coseg.data import find_samples, read_mask
from coseg.evaluate import evaluate_samples, write_evaluation
from coseg.models import create_model
from coseg.report.files import PREDICTION_INDEX, PREDICTIONS
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set
from tests.coseg.test_train_run import coseg as run_coseg

CPU = torch.device("cpu")


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) by its relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def evaluate_into(out: Path, p: float) -> None:
    scan = find_samples(out.parent / "data", "icoseg")
    write_evaluation(evaluate_samples(ConstantModel(p), scan.samples, 64, CPU, progress=False,
                                      predictions=out / PREDICTIONS), out)


def fail_on_call(monkeypatch, name: str, call: int, target=evaluate_module, counted=lambda *args: True) -> None:
    """Make ``target.name`` raise KeyboardInterrupt (Ctrl-C) on its ``call``-th call of those ``counted``."""
    real, calls = getattr(target, name), []

    def failing(*args, **kwargs):
        calls.extend([args] * bool(counted(*args)))
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)


def indexed_masks_agree(out: Path) -> None:
    """Every mask out/predictions/index.csv lists is there and is what per_image.csv scored (a constant model:
    all foreground gives J > 0 on these masks, all background J 0)."""
    rows = list(csv.DictReader(open(out / "per_image.csv", encoding="utf-8")))
    index = list(csv.DictReader(open(out / PREDICTIONS / PREDICTION_INDEX, encoding="utf-8")))
    assert len(index) == len(rows) == 3
    for row, entry in zip(rows, index):
        mask = read_mask(out / PREDICTIONS / entry["prediction"])
        assert (row["group"], row["image"]) == (entry["group"], entry["image"])
        assert (float(row["J"]) > 0) == bool(mask.all()) and (mask.all() or not mask.any())


@pytest.mark.parametrize("call", [1, 2, 3], ids=["first-mask", "second-mask", "last-mask"])
def test_a_rerun_stopped_while_predicting_leaves_the_earlier_evaluation_whole(tmp_path, monkeypatch, call):
    odd_sized_set(tmp_path / "data")
    out = tmp_path / "out"
    evaluate_into(out, 0.9)
    (out / "notes.txt").write_text("mine")
    earlier = contents(out)
    fail_on_call(monkeypatch, "write_png_atomic", call)
    with pytest.raises(KeyboardInterrupt):
        evaluate_into(out, 0.1)
    monkeypatch.undo()
    assert contents(out) == earlier  # no staged mask left either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]
    indexed_masks_agree(out)
    evaluate_into(out, 0.1)
    indexed_masks_agree(out)
    assert json.loads((out / "summary.json").read_text())["J"] == 0


def test_a_rerun_stopped_while_moving_its_masks_in_leaves_no_summary(tmp_path, monkeypatch):
    odd_sized_set(tmp_path / "data")
    out = tmp_path / "out"
    evaluate_into(out, 0.9)
    moved_in = lambda src, dst: Path(dst).parent.parent == out / PREDICTIONS  # noqa: E731 (not a staged write)
    fail_on_call(monkeypatch, "replace", 2, target=os, counted=moved_in)
    with pytest.raises(KeyboardInterrupt):
        evaluate_into(out, 0.1)
    monkeypatch.undo()
    assert not (out / "summary.json").exists() and (out / "per_image.csv").is_file()
    assert not [p for p in out.iterdir() if TEMPORARY_MARK in p.name]
    evaluate_into(out, 0.1)
    indexed_masks_agree(out)


def test_masks_move_in_when_predictions_is_on_another_disk(tmp_path, monkeypatch):
    """out/predictions a link to another file system: a staged mask cannot be renamed there (EXDEV), it is copied."""
    import errno

    odd_sized_set(tmp_path / "data")
    out = tmp_path / "out"
    real = os.replace

    def replace(src, dst):
        staged = f".{PREDICTIONS}{TEMPORARY_MARK}"
        if staged in str(src) and staged not in str(dst):  # a staged mask moved in
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src), None, str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    evaluate_into(out, 0.9)
    evaluate_into(out, 0.1)
    monkeypatch.undo()
    indexed_masks_agree(out)
    assert not [p for p in out.rglob("*") if TEMPORARY_MARK in p.name]


def test_a_staged_folder_a_killed_evaluation_left_is_removed_by_the_next(tmp_path):
    odd_sized_set(tmp_path / "data")
    out = tmp_path / "out"
    stale = out / f".{PREDICTIONS}{TEMPORARY_MARK}killed" / "g0"
    stale.mkdir(parents=True)
    (stale / "im0.png").write_bytes(b"half")
    evaluate_into(out, 0.9)
    assert sorted(p.name for p in out.iterdir()) == ["per_image.csv", PREDICTIONS, "summary.json"]
    indexed_masks_agree(out)
    stale.mkdir(parents=True)
    scan = find_samples(tmp_path / "data", "icoseg")
    write_evaluation(evaluate_samples(ConstantModel(0.1), scan.samples, 64, CPU, progress=False), out)
    assert sorted(p.name for p in out.iterdir()) == ["per_image.csv", "summary.json"]  # evaluated without --report


def test_a_rerun_that_scores_nothing_keeps_the_earlier_evaluation(tmp_path):
    odd_sized_set(tmp_path / "data")
    out = tmp_path / "out"
    evaluate_into(out, 0.9)
    earlier = contents(out)
    scan = find_samples(tmp_path / "data", "icoseg")
    for sample in scan.samples:
        sample.mask.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="no image could be evaluated"):
        evaluate_samples(ConstantModel(0.1), scan.samples, 64, CPU, progress=False, predictions=out / PREDICTIONS)
    assert contents(out) == earlier


def test_coseg_evaluate_report_interrupted_keeps_the_earlier_evaluation_and_report(tmp_path, monkeypatch):
    data, out = odd_sized_set(tmp_path / "data"), tmp_path / "out"
    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=0).save(model, {"image_size": "64"})
    args = ["evaluate", "--checkpoint", model, "--data", data, "--output", out, "--report", "--no-colour-cut",
            "--edge-radius", 0, "--quiet"]
    assert run_coseg(*args)[0] == 0
    earlier = contents(out)
    assert "report.html" in earlier and f"{PREDICTIONS}/{PREDICTION_INDEX}" in earlier
    fail_on_call(monkeypatch, "write_png_atomic", 2)
    code, output = run_coseg(*args)
    assert code == 130 and "interrupted" in output
    assert contents(out) == earlier


def test_ctrl_c_while_the_report_is_built_tells_that_the_scores_are_written(tmp_path, monkeypatch):
    """Ctrl-C after summary.json was written, while `evaluate --report` built its report, said "interrupted before it
    wrote its results"."""
    import coseg.report.build

    data, out = odd_sized_set(tmp_path / "data"), tmp_path / "out"
    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=0).save(model, {"image_size": "64"})

    def interrupted(*args, **kwargs) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(coseg.report.build, "build_report", interrupted)
    code, output = run_coseg("evaluate", "--checkpoint", model, "--data", data, "--output", out, "--report",
                             "--no-colour-cut", "--edge-radius", 0, "--quiet")
    assert code == 130 and "before it wrote its results" not in output, output
    assert "summary.json, written last, is there only if the scores were all written" in output
    assert (out / "summary.json").is_file()
