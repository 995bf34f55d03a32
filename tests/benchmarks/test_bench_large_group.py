"""benchmarks/large_group.py repeats each size's whole / chunks measurement side by side and reports medians and the
median of the per-round time ratios with every round's; the table prints the JSON's numbers; --help describes every
option (and the whole description, not its first line cut mid-sentence)."""
from __future__ import annotations

import json
import sys

import pytest

from coseg.data import make_synthetic_coseg
from tests.benchmarks.scripts import BENCHMARKS, load_script, options_without_help


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings checks.py and timing.py
    return load_script("large_group.py")


def test_sizes_are_measured_in_rounds_with_the_median_ratio(bench, tmp_path, monkeypatch, capsys):
    """Fake measurements: whole takes 2 s, chunks 1, 3 and 5 s in turn; the order within a round alternates."""
    calls = []
    chunks_seconds = iter([1.0, 3.0, 5.0])

    def measure(folder, stream_above, args):
        mode = "whole" if stream_above == bench.WHOLE else "chunks"
        calls.append(mode)
        seconds = 2.0 if mode == "whole" else next(chunks_seconds)
        return {"seconds": seconds, "results": 2, "skipped": [], "model_loaded_mb": 100.0,
                "peak_mb": 100.0 + 10 * seconds}

    monkeypatch.setattr(bench, "measure", measure)
    photos = make_synthetic_coseg(tmp_path / "photos", num_groups=1, images_per_group=2, size=32, layout="folders")
    out = tmp_path / "large_group.json"
    monkeypatch.setattr(sys, "argv", ["large_group.py", "--images", "2", "--rounds", "3",
                                      "--images-from", str(photos / "images"), "--out", str(out)])
    bench.main()
    assert calls == ["whole", "chunks", "chunks", "whole", "whole", "chunks"]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["time_ratio"] == 1.5 and row["time_ratio_pairs"] == [0.5, 1.5, 2.5]
    assert row["chunks"]["seconds"] == 3.0 and row["chunks"]["peak_mb"] == 130.0 and len(row["chunks"]["runs"]) == 3
    table = capsys.readouterr().out.splitlines()
    assert table[3].split()[:6] == ["2", "chunks", "130", "30", "3.0", "1.500"]


def test_help_explains_every_option(bench, monkeypatch, capsys):
    assert options_without_help(bench.main) == []
    monkeypatch.setattr(sys, "argv", ["large_group.py", "--help"])
    with pytest.raises(SystemExit):
        bench.main()
    assert "stream_above" in capsys.readouterr().out  # the description goes on past its first line


@pytest.mark.parametrize("option", ["--rounds", "--images", "--image-size"])
def test_counts_below_one_are_refused(bench, monkeypatch, option):
    monkeypatch.setattr(sys, "argv", ["large_group.py", option, "0"])
    with pytest.raises(SystemExit) as stopped:
        bench.main()
    assert stopped.value.code == 2
