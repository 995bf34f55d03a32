"""benchmarks/coseg_icoseg.py in its smallest configuration on a generated set in iCoseg's layout (``train30`` /
``test8`` splits): one model trained for one epoch, every inference variant scored, the table printed and the JSON
written atomically; its side-by-side speed ratios in few rounds; and the one-line refusals of a data path or an
output path that cannot serve (the scores and timings themselves are the benchmark's business, not a test's)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from coseg.data import make_synthetic_coseg
from tests.benchmarks.scripts import BENCHMARKS, assert_one_line_error, load_script, run_script

TINY = [f"--set={kv}" for kv in ("members=1", "weights=none", "image_size=64", "groups_per_batch=2",
                                  "images_per_group=2", "triplet_pixels=8", "val_fraction=0.5", "device=cpu",
                                  "quiet=true", "epochs=1")]


def icoseg_like(root: Path) -> Path:
    """6 groups of 3 images in iCoseg's layout; ``train30``: the first 4, ``test8``: the last 2 with short names."""
    make_synthetic_coseg(root, num_groups=6, images_per_group=3, size=64, layout="icoseg")
    groups = sorted(p.name for p in (root / "images").iterdir())
    splits = {"train30": groups[:4], "test8": {g: f"short{i}" for i, g in enumerate(groups[4:])}}
    (root / "splits.json").write_text(json.dumps(splits))
    return root


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, Path, str]:
    """(data, JSON, run folder, stdout) of the smallest benchmark run, over a JSON file that was there before."""
    tmp = tmp_path_factory.mktemp("icoseg_bench")
    data = icoseg_like(tmp / "icoseg")
    out = tmp / "out" / "icoseg.json"
    out.parent.mkdir()
    out.write_text("an earlier run's\n")
    os.link(out, out.with_name("earlier.json"))  # another name of the earlier file: rewritten in place, it changes
    done = run_script("coseg_icoseg.py", "--data", data, "--minutes", 0.01, "--skip-speed", *TINY, "--out", out)
    assert done.returncode == 0, done.stderr
    assert out.with_name("earlier.json").read_text() == "an earlier run's\n", "the JSON was rewritten in place"
    return data, out, tmp / "out" / "icoseg_run", done.stdout


@pytest.mark.slow
def test_smallest_run_prints_the_table_and_writes_the_json(finished):
    data, out, run, stdout = finished
    result = json.loads(out.read_text())
    assert set(result["per_group"]) == {"short0", "short1"}
    assert len(result["variants"]) == 11 and result["variants"]["model+edges+colour"]["J"] == result["J"]
    assert all({"P", "J", "seconds", "per_group"} <= set(v) for v in result["variants"].values())
    assert result["epochs"] == 1 and result["members"] == [] and {"minutes", "images_per_s", "val_J"} <= set(result)
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    assert (run / "best.safetensors").is_file()
    lines = stdout.splitlines()
    assert any(line.split()[:1] == ["mean"] for line in lines) and any(line.startswith("trained ") for line in lines)


@pytest.mark.slow
def test_speed_ratios_are_measured_side_by_side(finished, monkeypatch):
    data, _, run, _ = finished
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings timing.py and checks.py
    bench = load_script("coseg_icoseg.py")
    cfg = bench.load_config(bench.CosegTrainConfig, run / "config.yaml")
    scan = bench.find_samples(data, "icoseg")
    test = bench.samples_of(scan, bench.choose_groups(scan, data / "splits.json", "test8", []))
    speed = {**bench.measure_predict_vs_forward(run / "best.safetensors", cfg.image_size, test, rounds=2),
             **bench.measure_train_vs_plain(run / "best.safetensors", cfg, data, steps=2, rounds=2)}
    for key in ("predict_vs_forward", "train_vs_plain"):
        assert speed[key] > 0 and len(speed[f"{key}_pairs"]) == 2


@pytest.mark.slow
def test_a_data_path_that_cannot_serve_is_one_line(tmp_path):
    out = tmp_path / "out.json"
    done = run_script("coseg_icoseg.py", "--data", tmp_path / "missing", "--minutes", 0.01, "--out", out)
    assert_one_line_error(done, "data folder not found", str(tmp_path / "missing"))
    (tmp_path / "flowers" / "01_Daffodil").mkdir(parents=True)  # another data set's layout
    done = run_script("coseg_icoseg.py", "--data", tmp_path / "flowers", "--minutes", 0.01, "--out", out)
    assert_one_line_error(done, "image folder not found")
    done = run_script("coseg_icoseg.py", "--data", tmp_path / "missing", "--scores-of", tmp_path / "run", "--out", out)
    assert_one_line_error(done, "data folder not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flowers"]  # nothing written


@pytest.mark.slow
def test_an_output_that_cannot_be_written_is_one_line_before_training(finished, tmp_path):
    data, _, run, _ = finished
    (tmp_path / "file").write_text("x")
    done = run_script("coseg_icoseg.py", "--data", data, "--minutes", 0.01, "--skip-speed", *TINY,
                      "--out", tmp_path / "file" / "icoseg.json", "--run-dir", tmp_path / "run")
    assert_one_line_error(done, "cannot write --out", str(tmp_path / "file" / "icoseg.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no run trained
    done = run_script("coseg_icoseg.py", "--data", data, "--scores-of", tmp_path / "run", "--out", tmp_path / "s.json")
    assert_one_line_error(done, "config.yaml")
    done = run_script("coseg_icoseg.py", "--data", data, "--minutes", 0.01, *TINY, "--out", tmp_path / "again.json",
                      "--run-dir", run)
    assert_one_line_error(done, "already holds a run")
