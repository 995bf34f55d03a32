"""Benchmarks given a finished model: benchmarks/coseg_icoseg.py --speed-of refuses, in one line before measuring, an
ensemble run without the member folder its training speed ratios are timed on (one put together by ``coseg
ensemble``); benchmarks/retrieval_flowers.py --export-speed and benchmarks/large_group.py --checkpoint refuse the
other trainer's model file (both write best.safetensors) likewise; and large_group.py records the members and size of
the checkpoint it ran, not those of the default architecture it did not run."""
from __future__ import annotations

import json
import sys

import pytest

from apps.retrieval.model import create_retrieval_model
from coseg.config import CosegTrainConfig
from coseg.data import make_synthetic_coseg
from coseg.engine import config_from_dict, save_config
from coseg.models import create_model
from tests.apps.retrieval_files import write_class_folders
from tests.benchmarks.scripts import BENCHMARKS, load_script
from tests.benchmarks.test_coseg_icoseg import icoseg_like


def test_speed_of_an_ensemble_without_member_runs_is_refused_before_measuring(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings timing.py and checks.py
    bench = load_script("coseg_icoseg.py")

    def reached(*args, **kwargs):
        raise AssertionError("the benchmark went on to measure")

    monkeypatch.setattr(bench, "speed_ratios", reached)
    data = icoseg_like(tmp_path / "icoseg")
    run = tmp_path / "ens"  # as `coseg ensemble a/best.safetensors b/best.safetensors c/best.safetensors` leaves it
    cfg = config_from_dict(CosegTrainConfig, {"data": str(data), "layout": "icoseg", "train_split": "train30",
                                              "output": str(run), "members": 3}, "test")
    save_config(cfg, run / "config.yaml")
    (run / "best.safetensors").write_bytes(b"never read")
    monkeypatch.setattr(sys, "argv", ["coseg_icoseg.py", "--data", str(data), "--speed-of", str(run),
                                      "--out", str(tmp_path / "speed.json")])
    with pytest.raises(SystemExit) as stopped:
        bench.main()
    message = str(stopped.value.code)
    assert message.startswith("coseg_icoseg.py: error: ") and "\n" not in message, message
    assert "member0" in message and str(run) in message
    assert not (tmp_path / "speed.json").exists()


@pytest.mark.parametrize("mode, extra", [("--scores-of", ["--set", "image_size=128"]),
                                         ("--scores-of", ["--minutes", "1"]),
                                         ("--speed-of", ["--config", "other.yaml"]),
                                         ("--speed-of", ["--scores-of", "RUN"])])
def test_options_a_finished_run_would_ignore_are_refused(tmp_path, monkeypatch, capsys, mode, extra):
    """--scores-of/--speed-of take the run's config.yaml: a --set (say, another image size) or a second run would
    silently not apply to what is measured."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = load_script("coseg_icoseg.py")

    def reached(*args, **kwargs):
        raise AssertionError("the benchmark went on to score or measure")

    for name in ("quality", "speed_ratios"):
        monkeypatch.setattr(bench, name, reached)
    data = icoseg_like(tmp_path / "icoseg")
    run = tmp_path / "run"
    save_config(config_from_dict(CosegTrainConfig, {"data": str(data), "layout": "icoseg", "train_split": "train30",
                                                    "output": str(run)}, "test"), run / "config.yaml")
    (run / "best.safetensors").write_bytes(b"never read")
    extra = [str(run) if arg == "RUN" else arg for arg in extra]
    monkeypatch.setattr(sys, "argv", ["coseg_icoseg.py", "--data", str(data), mode, str(run), *extra,
                                      "--out", str(tmp_path / "out.json")])
    with pytest.raises(SystemExit) as stopped:
        bench.main()
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"coseg_icoseg.py: error: {extra[0]}") and f"cannot be used with {mode}" in error, error


def test_export_speed_of_a_coseg_model_file_is_refused_before_measuring(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = load_script("retrieval_flowers.py")

    def reached(*args, **kwargs):
        raise AssertionError("the benchmark went on to measure")

    monkeypatch.setattr(bench, "measure_export_vs_forward", reached)
    classes = [f"{i:02d}_flower" for i in range(4)]
    data = write_class_folders(tmp_path / "flowers", classes, per_class=2, splits={"train": classes[:2],
                                                                                   "test": classes[2:]})
    checkpoint = tmp_path / "best.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=1).save(checkpoint, metadata={"image_size": "64"})
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--data", str(data), "--export-speed", str(checkpoint), "--out", str(tmp_path / "speed.json")])
    message = str(stopped.value.code)
    assert ": error: " in message and "\n" not in message, message
    assert "co-segmentation model, not a retrieval model" in message
    assert not (tmp_path / "speed.json").exists()


@pytest.fixture
def large_group(monkeypatch):
    """benchmarks/large_group.py as a module whose measurements are faked (each would run in a process of its own)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = load_script("large_group.py")
    monkeypatch.setattr(bench, "measure", lambda folder, stream_above, args: {
        "seconds": 1.0, "results": 2, "skipped": [], "model_loaded_mb": 100.0, "peak_mb": 110.0})
    return bench


def run_large_group(bench, monkeypatch, tmp_path, checkpoint) -> None:
    photos = make_synthetic_coseg(tmp_path / "photos", num_groups=1, images_per_group=2, size=32, layout="folders")
    monkeypatch.setattr(sys, "argv", ["large_group.py", "--checkpoint", str(checkpoint), "--images", "2", "--rounds",
                                      "1", "--images-from", str(photos / "images"), "--out",
                                      str(tmp_path / "large_group.json")])
    bench.main()


def test_large_group_records_what_a_checkpoint_ran(large_group, tmp_path, monkeypatch):
    checkpoint = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=1).save(checkpoint, metadata={"image_size": "96"})
    run_large_group(large_group, monkeypatch, tmp_path, checkpoint)
    result = json.loads((tmp_path / "large_group.json").read_text())
    assert (result["members"], result["image_size"], result["checkpoint"]) == (1, 96, str(checkpoint))


def test_large_group_refuses_a_retrieval_model_in_one_line(large_group, tmp_path, monkeypatch):
    checkpoint = tmp_path / "best.safetensors"
    create_retrieval_model("test_efficientnet", weights=None, embedding_dim=8).save(checkpoint)
    monkeypatch.setattr(large_group, "measure", lambda *args: pytest.fail("the benchmark went on to measure"))
    with pytest.raises(SystemExit) as stopped:
        run_large_group(large_group, monkeypatch, tmp_path, checkpoint)
    message = str(stopped.value.code)
    assert ": error: " in message and "\n" not in message, message
    assert "retrieval model, not a co-segmentation model" in message
