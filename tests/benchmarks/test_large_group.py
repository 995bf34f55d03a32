"""benchmarks/large_group.py in its smallest configuration: a group of 2 generated images read whole and in chunks
(each in a process of its own) by a one-member untrained model at 64 px, the table with the chunks/whole time ratio
printed and the JSON written; and the one-line refusals of what cannot serve."""
from __future__ import annotations

import json

import pytest

from coseg.data import make_synthetic_coseg
from tests.benchmarks.scripts import assert_one_line_error, run_script

TINY = ["--images", 2, "--members", 1, "--image-size", 64, "--rounds", 1]


@pytest.mark.slow
def test_smallest_run_prints_the_ratio_and_writes_the_json(tmp_path):
    photos = make_synthetic_coseg(tmp_path / "photos", num_groups=1, images_per_group=2, size=64, layout="folders")
    out = tmp_path / "out" / "large_group.json"
    done = run_script("large_group.py", *TINY, "--images-from", photos / "images", "--out", out)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["images"] == 2 and row["whole"]["results"] == row["chunks"]["results"] == 2
    assert row["time_ratio"] == row["chunks"]["seconds"] / row["whole"]["seconds"]
    assert [line.split()[:2] for line in done.stdout.splitlines()[2:4]] == [["2", "whole"], ["2", "chunks"]]
    assert f"{row['time_ratio']:.3f}" in done.stdout.splitlines()[3]
    assert [p.name for p in out.parent.iterdir()] == ["large_group.json"]


@pytest.mark.slow
def test_what_cannot_serve_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    done = run_script("large_group.py", *TINY, "--images-from", tmp_path / "missing")
    assert_one_line_error(done, "--images-from", "folder not found")
    done = run_script("large_group.py", *TINY, "--images-from", tmp_path / "empty")
    assert_one_line_error(done, "no .jpg images")
    done = run_script("large_group.py", *TINY, "--checkpoint", tmp_path / "missing.safetensors")
    assert_one_line_error(done, "model file not found")
    done = run_script("large_group.py", *TINY, "--checkpoint", tmp_path / "file")
    assert_one_line_error(done, "not a safetensors model file")
    done = run_script("large_group.py", *TINY, "--out", tmp_path / "file" / "large_group.json")
    assert_one_line_error(done, "cannot write --out")
