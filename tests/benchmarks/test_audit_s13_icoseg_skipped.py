"""Audit of coseg_icoseg.py --scores-of: a test8 image that cannot be read is left out of the scores and said so (in
the table's output and the JSON), not scored around without a word; a run folder whose model file is not a model
is refused in one line before any scoring."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from coseg.config import CosegTrainConfig
from coseg.engine import config_from_dict
from coseg.train import RUN_FOLDER, build_model
from tests.benchmarks.scripts import BENCHMARKS, assert_one_line_error, load_script, run_script
from tests.benchmarks.test_coseg_icoseg import icoseg_like


def finished_run(data: Path, run: Path) -> None:
    """A run folder as training leaves it (config.yaml, best.safetensors) with an untrained tiny model."""
    cfg = config_from_dict(CosegTrainConfig, {
        "data": str(data), "layout": "icoseg", "output": str(run), "train_split": "train30", "weights": "none",
        "image_size": 64, "embedding_dim": 8, "group_levels": 1, "val_fraction": 0.5, "device": "cpu"}, "test")
    run.mkdir(parents=True)
    RUN_FOLDER.save_config(cfg, run / "config.yaml")
    build_model(cfg).save(run / "best.safetensors", metadata={"image_size": "64"})


@pytest.mark.slow
def test_an_unreadable_test8_image_is_left_out_and_reported(tmp_path, monkeypatch, capsys):
    data = icoseg_like(tmp_path / "icoseg")
    bad = sorted((data / "images" / sorted(json.loads((data / "splits.json").read_text())["test8"])[-1]).iterdir())[0]
    bad.write_bytes(b"not an image")
    finished_run(data, tmp_path / "run")
    out = tmp_path / "scores.json"
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings timing.py and checks.py
    monkeypatch.setattr(sys, "argv", ["coseg_icoseg.py", "--data", str(data), "--scores-of", str(tmp_path / "run"),
                                      "--out", str(out)])
    load_script("coseg_icoseg.py").main()
    result = json.loads(out.read_text())
    assert [entry["file"] for entry in result["skipped_files"]] == [str(bad)]
    assert all(variant["skipped"] == 1 for variant in result["variants"].values())
    printed = capsys.readouterr().out
    assert "skipped 1 file(s) that could not be scored" in printed and f"  {bad}: " in printed


@pytest.mark.slow
def test_a_model_file_that_is_not_a_model_is_one_line_before_scoring(tmp_path):
    data = icoseg_like(tmp_path / "icoseg")
    finished_run(data, tmp_path / "run")
    (tmp_path / "run" / "best.safetensors").write_bytes(b"garbage\n")
    done = run_script("coseg_icoseg.py", "--data", data, "--scores-of", tmp_path / "run", "--out",
                      tmp_path / "scores.json")
    assert_one_line_error(done, str(tmp_path / "run" / "best.safetensors"), "not a safetensors model file")
    assert not (tmp_path / "scores.json").exists()


@pytest.mark.slow
def test_a_splits_file_the_toolkit_reads_is_read_alike_when_scoring(tmp_path, monkeypatch):
    """A splits.json with a byte-order mark and test8 as a plain list passed every check, then stopped the scoring
    (after the whole training, without --scores-of) with a traceback: quality() read it with json.loads."""
    data = icoseg_like(tmp_path / "icoseg")
    splits = json.loads((data / "splits.json").read_text())
    splits["test8"] = sorted(splits["test8"])
    (data / "splits.json").write_text("\ufeff" + json.dumps(splits), encoding="utf-8")
    finished_run(data, tmp_path / "run")
    out = tmp_path / "scores.json"
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", ["coseg_icoseg.py", "--data", str(data), "--scores-of", str(tmp_path / "run"),
                                      "--out", str(out)])
    load_script("coseg_icoseg.py").main()
    assert sorted(json.loads(out.read_text())["per_group"]) == splits["test8"]
