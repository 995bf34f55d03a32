"""benchmarks/data_decode.py measures side by side: one untimed load first (a cold first read must not pass for a
speed-up of the rows after it), then rounds in alternating order, medians and every round's ratio; the table prints
the JSON's numbers; and --help explains every option."""
from __future__ import annotations

import json

import pytest

from coseg.data import make_synthetic_coseg
from tests.benchmarks.scripts import BENCHMARKS, load_script, options_without_help


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings checks.py and timing.py
    return load_script("data_decode.py")


def test_a_slow_first_load_is_no_speedup(bench, tmp_path, monkeypatch, capsys):
    """Every load takes 1 s but the very first (cold files), 3 s: the same thread count twice is a speed-up of 1."""
    data = make_synthetic_coseg(tmp_path / "data", num_groups=1, images_per_group=2, size=32, layout="folders")
    loads = []
    real = bench.timed_load

    def timed_load(cache, samples):
        real(cache, samples)
        loads.append(1)
        return 3.0 if len(loads) == 1 else 1.0

    monkeypatch.setattr(bench, "timed_load", timed_load)
    out = tmp_path / "data_decode.json"
    bench.main(["--root", str(data), "--sizes", "16", "--threads", "1", "1", "--rounds", "3", "--out", str(out)])
    result = json.loads(out.read_text())
    assert [(r["threads"], r["speedup"], r["speedup_pairs"]) for r in result["rows"]] == [(1, 1.0, [1.0] * 3)] * 2
    assert result["reload"]["reload_speedup"] == 1.0 and len(result["reload"]["reload_speedup_pairs"]) == 3
    table = capsys.readouterr().out.splitlines()
    for row, line in zip(result["rows"], table[2:4]):
        assert line.split()[:6] == [str(row["size"]), str(row["threads"]), f"{row['seconds']:.2f}",
                                    f"{row['images_per_s']:.0f}", f"{row['speedup']:.2f}", str(row["skipped"])]


def test_help_explains_every_option(bench):
    assert options_without_help(bench.main) == []


@pytest.mark.parametrize("option", ["--rounds", "--threads", "--sizes"])
def test_counts_below_one_are_refused(bench, option):
    with pytest.raises(SystemExit) as stopped:
        bench.main([option, "0"])
    assert stopped.value.code == 2
