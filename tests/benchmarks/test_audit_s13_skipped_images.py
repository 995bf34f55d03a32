"""Audit of large_group.py, group_statistics_chunks.py and data_decode.py: an image that cannot be read is left
out, as ``coseg predict`` and ``coseg evaluate`` leave it, and said so (printed, listed in the JSON), not only
counted as one mask fewer in ``results``, one more in a row's ``skipped``, or left out of the scores without a
word."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from coseg.data import make_synthetic_coseg
from coseg.models import create_model
from tests.benchmarks.scripts import BENCHMARKS, load_script


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings checks.py and timing.py
    return load_script("large_group.py")


def test_a_measurement_lists_the_images_it_could_not_read(bench, tmp_path):
    folder = tmp_path / "group"
    folder.mkdir()
    for i in range(2):
        pixels = np.random.default_rng(i).integers(0, 256, (48, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg")
    (folder / "2.jpg").write_bytes(b"not a jpeg")
    checkpoint = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=1).save(checkpoint, metadata={"image_size": "64"})
    measured = bench.child(folder, bench.WHOLE, checkpoint, 1, 64)
    assert measured["results"] == 2
    assert len(measured["skipped"]) == 1 and "2.jpg" in measured["skipped"][0]


def test_the_table_and_the_json_show_the_skipped_images(bench, tmp_path, monkeypatch, capsys):
    def measure(folder, stream_above, args):
        return {"seconds": 1.0, "results": 1, "skipped": ["/photos/b.jpg: cannot read image"], "model_loaded_mb": 1.0,
                "peak_mb": 2.0}

    monkeypatch.setattr(bench, "measure", measure)
    monkeypatch.setattr(bench, "group_folder", lambda folder, count, images_from: folder)
    (tmp_path / "a.jpg").write_bytes(b"")
    out = tmp_path / "large_group.json"
    monkeypatch.setattr(sys, "argv", ["large_group.py", "--images", "2", "--rounds", "1", "--images-from",
                                      str(tmp_path), "--out", str(out)])
    bench.main()
    (row,) = json.loads(out.read_text())["rows"]
    assert row["whole"]["skipped"] == row["chunks"]["skipped"] == ["/photos/b.jpg: cannot read image"]
    printed = [line for line in capsys.readouterr().out.splitlines() if "skipped" in line]
    assert printed == ["       skipped (left out of the group): /photos/b.jpg: cannot read image"]


def test_group_statistics_chunks_reports_the_images_it_left_out(tmp_path, monkeypatch, capsys):
    """Its scores left an unreadable image out without a word (group_statistics_chunks.py)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = load_script("group_statistics_chunks.py")
    checkpoint = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=1).save(checkpoint, metadata={"image_size": "64"})
    data = make_synthetic_coseg(tmp_path / "data", num_groups=1, images_per_group=3, size=64)
    bad = data / "images" / "00-star" / "img001.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "chunks.json"
    bench.main(["--checkpoint", str(checkpoint), "--data", str(data), "--groups", "00", "--size", "64",
                "--images-per-chunk", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert [entry["file"] for entry in result["skipped_files"]] == [str(bad)]
    assert result["groups"]["00-star"]["images"] == 2
    printed = capsys.readouterr().out
    assert "skipped 1 file(s) that could not be scored" in printed and f"  {bad}: " in printed


def test_data_decode_names_the_files_it_could_not_decode(tmp_path, monkeypatch, capsys):
    """data_decode.py counted them in each row, without saying which."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = load_script("data_decode.py")
    data = make_synthetic_coseg(tmp_path / "data", num_groups=1, images_per_group=3, size=32, layout="folders")
    bad = sorted((data / "images").rglob("*.jpg"))[1]
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "data_decode.json"
    bench.main(["--root", str(data), "--sizes", "16", "--threads", "1", "--rounds", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["rows"][0]["skipped"] == 1 and [entry["file"] for entry in result["skipped_files"]] == [str(bad)]
    assert f"skipped (not decoded, left out of images/s): {bad}: " in capsys.readouterr().out
