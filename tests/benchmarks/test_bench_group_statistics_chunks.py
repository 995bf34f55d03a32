"""benchmarks/group_statistics_chunks.py scores a model file's groups with the group statistics in one pass and in
chunks: a group that fits one chunk gives the same masks both ways, a larger one is measured in chunks; the table
and the JSON hold the same figures; a bad data path is one line."""
from __future__ import annotations

import json
import sys

import pytest

from coseg.data import make_synthetic_coseg
from coseg.models import cosegnet, create_model
from tests.benchmarks.scripts import BENCHMARKS, assert_one_line_error, load_script, options_without_help, run_script


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling checks.py
    return load_script("group_statistics_chunks.py")


@pytest.fixture
def model_and_data(tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=1).save(checkpoint, metadata={"image_size": "64"})
    return checkpoint, make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=4, size=64)


@pytest.mark.parametrize("per_chunk, chunked", [(4, False), (1, True)])
def test_groups_are_scored_in_one_pass_and_in_chunks(bench, model_and_data, tmp_path, monkeypatch, capsys,
                                                     per_chunk, chunked):
    checkpoint, data = model_and_data
    measured = []
    pass_of = cosegnet.CosegNet._statistics_pass
    monkeypatch.setattr(cosegnet.CosegNet, "_statistics_pass",
                        lambda self, images: measured.append(cosegnet.STATISTICS_PIXELS) or pass_of(self, images))
    out = tmp_path / "chunks.json"
    default = cosegnet.STATISTICS_PIXELS
    monkeypatch.setattr(sys, "argv", ["group_statistics_chunks.py", "--checkpoint", str(checkpoint), "--data",
                                      str(data), "--groups", "00,01", "--size", "64",
                                      "--images-per-chunk", str(per_chunk), "--out", str(out)])
    bench.main()
    assert cosegnet.STATISTICS_PIXELS == default
    assert sorted(set(measured)) == sorted({bench.ONE_PASS, per_chunk * 64 * 64})
    result = json.loads(out.read_text())
    assert result["chunk_images"] == per_chunk and set(result["groups"]) == {"00-star", "01-ellipse"}
    for row in result["groups"].values():
        assert row["images"] == 4 and row["chunked"] is chunked
        if not chunked:  # one chunk holds the whole group: the very same statistics
            assert row["image_dJ_max"] == 0 and row["one_pass"] == row["chunks"]
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"64 px, chunks of {per_chunk} image(s), statistics strength 8.0"
    assert table[-1].split()[1:] == [f"{result['J']['one pass']:.2f}", f"{result['J']['chunks']:.2f}"]


def test_a_missing_data_folder_is_one_line(model_and_data, tmp_path):
    checkpoint, _ = model_and_data
    done = run_script("group_statistics_chunks.py", "--checkpoint", checkpoint, "--data", tmp_path / "nowhere",
                      "--groups", "a")
    assert_one_line_error(done, "nowhere")


def test_help_explains_every_option(bench, monkeypatch):
    assert options_without_help(bench.main) == []
    monkeypatch.setattr(sys, "argv", ["group_statistics_chunks.py", "--help"])
    with pytest.raises(SystemExit):
        bench.main()
