"""benchmarks/timing.py, the benchmarks' side-by-side measurement: pairs alternate their order, ratios are per pair."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "timing.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_timing", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pairs_alternate_which_side_runs_first(bench):
    calls = []

    def side(name, value):
        def run():
            calls.append(name)
            return value
        return run

    a, b = bench.paired_rounds(side("a", 1.0), side("b", 2.0), rounds=4)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert a == [1.0] * 4 and b == [2.0] * 4


def test_paired_ratios_are_the_median_of_each_pairs_ratio(bench):
    out = bench.paired_ratios([1.0, 3.0, 2.0], [2.0, 2.0, 1.0], "r")
    assert out == {"r": 1.5, "r_pairs": [0.5, 1.5, 2.0]}
