"""Side-by-side timing for the benchmarks: pairs of measurements whose order alternates, and per-pair ratios."""
from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Optional, Sequence


def rounds_in_turn(measures: Sequence[Callable[[], float]], rounds: int) -> list[list[float]]:
    """``rounds`` measurements of each of ``measures``, side by side in rounds (a load change on this shared machine
    hits every side of a round) whose order reverses every other round (whatever favours the first or the last of
    a round cancels); one list per measure."""
    out: list[list[float]] = [[] for _ in measures]
    for k in range(rounds):
        order = range(len(measures) - 1, -1, -1) if k % 2 else range(len(measures))
        for i in order:
            out[i].append(measures[i]())
    return out


def paired_rounds(first: Callable[[], float], second: Callable[[], float],
                  rounds: int) -> tuple[list[float], list[float]]:
    """:func:`rounds_in_turn` of two: ``rounds`` pairs whose order alternates."""
    a, b = rounds_in_turn([first, second], rounds)
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
    return {key: statistics.median(ratios),
            f"{key}_ci95": None if interval is None else [round(v, 4) for v in interval],
            f"{key}_pairs": [round(r, 4) for r in ratios]}
