"""benchmarks/data_decode.py in its smallest configuration on a generated set: one size, two thread counts side by
side with their speedup, the disk-cache reload against the decode, the JSON written; and the one-line refusals of a
data path or an output path that cannot serve."""
from __future__ import annotations

import json
import statistics

import pytest

from coseg.data import make_synthetic_coseg
from tests.benchmarks.scripts import assert_one_line_error, run_script


@pytest.mark.slow
def test_smallest_run_prints_ratios_and_writes_the_json(tmp_path):
    data = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=3, size=64, layout="folders")
    out = tmp_path / "out" / "data_decode.json"
    done = run_script("data_decode.py", "--root", data, "--sizes", 32, "--threads", 1, 2, "--out", out)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["samples"] == 6 and [(r["size"], r["threads"]) for r in result["rows"]] == [(32, 1), (32, 2)]
    assert result["rows"][0]["speedup"] == 1.0 and result["rows"][1]["speedup"] > 0
    reload = result["reload"]
    assert len(reload["reload_speedup_pairs"]) == result["rounds"] == 3
    assert reload["reload_speedup"] == pytest.approx(statistics.median(reload["reload_speedup_pairs"]), abs=1e-4)
    assert "speedup" in done.stdout and "x the decode" in done.stdout
    assert [p.name for p in out.parent.iterdir()] == ["data_decode.json"]


@pytest.mark.slow
def test_what_cannot_serve_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    done = run_script("data_decode.py", "--root", tmp_path / "missing", "--sizes", 32, "--threads", 1)
    assert_one_line_error(done, "--root", "folder not found")  # not a synthetic set measured in its place
    (tmp_path / "no_images").mkdir()
    done = run_script("data_decode.py", "--root", tmp_path / "no_images", "--sizes", 32, "--threads", 1)
    assert_one_line_error(done, str(tmp_path / "no_images"))
    data = make_synthetic_coseg(tmp_path / "data", num_groups=1, images_per_group=1, size=32, layout="folders")
    done = run_script("data_decode.py", "--root", data, "--sizes", 32, "--threads", 1,
                      "--out", tmp_path / "file" / "data_decode.json")
    assert_one_line_error(done, "cannot write --out")
