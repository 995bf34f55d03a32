"""benchmarks/metric_vs_pml.py's ratios come from paired rounds in alternating order (the median of each round's
ratio, with its 95 % interval and every round's ratio), not from two separately measured medians; the printed table
shows what the JSON holds. Cheap stand-in workloads: no speed is measured."""
from __future__ import annotations

import json
import statistics
import sys
from functools import partial

import pytest
import torch

from tests.benchmarks.scripts import BENCHMARKS, load_script


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings timing.py and checks.py
    module = load_script("metric_vs_pml.py")
    x = torch.randn(16, 4)
    monkeypatch.setattr(module, "snr_calls", lambda quick: (16, 4, lambda: x @ x.T + 1, lambda: x @ x.T + 1))
    monkeypatch.setattr(module, "seconds_per_call", partial(module.seconds_per_call, min_seconds=1e-4))
    return module


def test_seconds_per_call_times_every_function_in_each_round_in_alternating_order(bench):
    calls = []
    per_round = bench.seconds_per_call([lambda: calls.append("a"), lambda: calls.append("b")], rounds=4,
                                       min_seconds=0.0)
    assert [len(s) for s in per_round] == [4, 4]
    assert calls[2:] == ["a", "b", "b", "a", "a", "b", "b", "a"]  # after one warm-up call of each


def test_snr_time_ratio_is_the_median_of_paired_rounds(bench):
    out = bench.measure_snr_time(True, rounds=7)
    pairs = out["snr_time_ratio_pairs"]
    assert len(pairs) == 7 and out["snr_time_ratio"] == pytest.approx(statistics.median(pairs), abs=1e-4)
    assert len(out["snr_time_ratio_ci95"]) == 2 and out["snr_pml_seconds"] > 0


def test_the_table_shows_each_paired_ratio_with_its_spread_as_in_the_json(bench, monkeypatch, tmp_path, capsys):
    def detail(quick, rounds):
        return bench.paired_ratios([1.0, 3.0, 2.0], [2.0, 2.0, 1.0], "some_detail_ratio")

    monkeypatch.setattr(bench, "MEASUREMENTS", [bench.measure_snr_time, detail])
    out = tmp_path / "metric_vs_pml.json"
    monkeypatch.setattr(sys, "argv", ["metric_vs_pml.py", "--quick", "--rounds", "6", "--out", str(out)])
    bench.main()
    results = json.loads(out.read_text())
    table = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    for key in ("snr_time_ratio", "some_detail_ratio"):
        row = table[key]
        assert row.split()[1] == f"{results[key]:.4g}"
        assert f"95% CI {results[key + '_ci95']}  rounds {results[key + '_pairs']}" in row
        assert key + "_pairs" not in table and key + "_ci95" not in table  # shown in the ratio's row
    assert len(results["snr_time_ratio_pairs"]) == 6 and results["snr_time_ratio_ci95"] is not None
    assert results["some_detail_ratio"] == 1.5 and results["some_detail_ratio_ci95"] is None


def test_rounds_below_one_are_refused(bench, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "argv", ["metric_vs_pml.py", "--rounds", "0", "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit) as stopped:
        bench.main()
    assert stopped.value.code == 2 and "--rounds must be >= 1, got 0" in capsys.readouterr().err
