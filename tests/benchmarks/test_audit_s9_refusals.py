"""Benchmark options that cannot be measured are refused as usage errors naming the option, before any process is
started or model loaded: sizes and counts below 1 (colour_cut_memory.py, group_statistics_memory.py), a group
statistics strength that is negative or NaN, a negative chunk size (group_statistics_chunks.py), --skip-speed with
--speed-of (coseg_icoseg.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from coseg.data import make_synthetic_coseg
from coseg.models import create_model
from tests.benchmarks.scripts import BENCHMARKS, load_script, run_script


@pytest.fixture
def no_children(monkeypatch):
    """The memory benchmarks measure in child processes: none may start for options that are refused."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a measurement process was started: {args[0]}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their sibling checks.py


@pytest.mark.parametrize("script, argv, message", [
    ("colour_cut_memory.py", ["--sizes", "224", "0"], "--sizes must be >= 1, got 0"),
    ("colour_cut_memory.py", ["--sizes", "32", "--images", "0"], "--images must be >= 1, got 0"),
    ("group_statistics_memory.py", ["--images", "0"], "--images must be >= 1, got 0"),
    ("group_statistics_memory.py", ["--images", "2", "--size", "-3"], "--size must be >= 1, got -3"),
])
def test_a_size_or_count_below_one_is_a_usage_error(no_children, monkeypatch, capsys, script, argv, message):
    """``--sizes 0`` measured a cut of 0-pixel images and wrote its row; ``--images 0`` stopped with the child's
    traceback ("the child failed")."""
    monkeypatch.setattr(sys, "argv", [script])  # the name the usage error starts with
    with pytest.raises(SystemExit) as stopped:
        load_script(script).main(argv)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"{script}: error: {message}"


@pytest.fixture
def model_and_data(tmp_path):
    checkpoint = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=1).save(checkpoint, metadata={"image_size": "64"})
    return checkpoint, make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=2, size=64)


@pytest.mark.parametrize("option, message", [
    (["--strength", "-1"], "--strength: group statistics strength must be a finite number >= 0, got -1.0"),
    (["--strength", "nan"], "--strength: group statistics strength must be a finite number >= 0, got nan"),
    (["--images-per-chunk", "-2"], "--images-per-chunk must be >= 0 (0: as many as STATISTICS_PIXELS allows), got -2"),
])
def test_group_statistics_chunks_refuses_what_it_cannot_measure_before_loading(no_children, model_and_data, tmp_path,
                                                                              monkeypatch, capsys, option, message):
    """A strength the group statistics refuse stopped with a traceback once the model and the data were loaded (the
    option unnamed); a negative --images-per-chunk was taken for 0 without a word."""
    monkeypatch.setattr(sys, "argv", ["group_statistics_chunks.py"])
    bench = load_script("group_statistics_chunks.py")
    monkeypatch.setattr(bench, "load_for_inference", lambda *args: pytest.fail("the model was loaded"))
    checkpoint, data = model_and_data
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--checkpoint", str(checkpoint), "--data", str(data), "--groups", "00,01", "--size", "64",
                    *option, "--out", str(tmp_path / "out.json")])
    assert stopped.value.code == 2 and not (tmp_path / "out.json").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"group_statistics_chunks.py: error: {message}"


def test_skip_speed_with_speed_of_is_a_usage_error(tmp_path):
    """``--speed-of RUN --skip-speed`` (measure only the speed ratios, and skip them) measured them without a word."""
    done = run_script("coseg_icoseg.py", "--data", tmp_path / "icoseg", "--speed-of", tmp_path / "run",
                      "--skip-speed", "--out", tmp_path / "speed.json")
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        "coseg_icoseg.py: error: --skip-speed cannot be used with --speed-of, which measures the speed ratios alone")
    assert not (tmp_path / "speed.json").exists()
