"""benchmarks/timing.py, the benchmarks' side-by-side measurement: pairs alternate their order, ratios are per pair."""
from __future__ import annotations

import pytest

from tests.benchmarks.scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("timing.py")


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
    assert out == {"r": 1.5, "r_ci95": None, "r_pairs": [0.5, 1.5, 2.0]}


@pytest.mark.parametrize("n", [5, 6, 10, 24, 25])
def test_median_interval_matches_the_binomial_order_statistics(bench, n):
    """Against a direct count: the interval (x_(k), x_(n+1-k)) covers the median with probability
    1 - 2·P(Bin(n, 1/2) <= k - 1) >= 95 %, and k + 1 would fall below 95 %."""
    from math import comb

    def coverage(k):
        return 1 - 2 * sum(comb(n, i) for i in range(k)) / 2 ** n

    values = [float(v) for v in range(n, 0, -1)]  # order must not matter
    interval = bench.median_interval(values)
    feasible = [k for k in range(1, n // 2 + 1) if coverage(k) >= 0.95]
    if not feasible:
        assert interval is None
        return
    k = max(feasible)
    assert interval == (float(k), float(n + 1 - k))
    assert coverage(k) >= 0.95 > coverage(k + 1)
