"""Side-by-side timing for the benchmarks: pairs of measurements whose order alternates, and per-pair ratios."""
from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Optional


def paired_rounds(first: Callable[[], float], second: Callable[[], float],
                  rounds: int) -> tuple[list[float], list[float]]:
    """``rounds`` measurements of each, side by side in pairs (a load change on this shared machine hits both
    sides of a pair) whose order alternates (whatever favours the first or the second of a pair cancels)."""
    a, b = [], []
    for k in range(rounds):
        if k % 2:
            b.append(second())
            a.append(first())
        else:
            a.append(first())
            b.append(second())
    return a, b


def median_interval(values: list[float], confidence: float = 0.95) -> Optional[tuple[float, float]]:
    """Distribution-free confidence interval of the median: the order statistics (x_(k), x_(n+1−k)) with the largest k
    for which P(Binomial(n, ½) < k) ≤ (1 − confidence) / 2; None when ``values`` are too few for that confidence
    (fewer than 6 at 95 %)."""
    n, tail = len(values), (1 - confidence) / 2
    below, k = 0.0, 0  # below = P(Binomial(n, 1/2) < k + 1) after each step
    while k < n // 2:
        below += math.comb(n, k) / 2 ** n
        if below > tail:
            break
        k += 1
    if k == 0:
        return None
    ordered = sorted(values)
    return ordered[k - 1], ordered[n - k]


def paired_ratios(numerators: list[float], denominators: list[float], key: str) -> dict[str, Any]:
    """``key``: the median over rounds of numerator / denominator measured side by side in one round (the machine's
    slow drifts cancel within a pair), ``key_ci95``: the median's 95 % confidence interval (:func:`median_interval`),
    and ``key_pairs``: every round's ratio, for the spread."""
    ratios = [a / b for a, b in zip(numerators, denominators)]
    interval = median_interval(ratios)
    return {key: statistics.median(ratios), f"{key}_ci95": None if interval is None else [round(v, 4) for v in interval],
            f"{key}_pairs": [round(r, 4) for r in ratios]}
