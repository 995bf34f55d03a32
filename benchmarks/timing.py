"""Side-by-side timing for the benchmarks: pairs of measurements whose order alternates, and per-pair ratios."""
from __future__ import annotations

import statistics
from typing import Any, Callable


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


def paired_ratios(numerators: list[float], denominators: list[float], key: str) -> dict[str, Any]:
    """``key``: the median over rounds of numerator / denominator measured side by side in one round (the machine's
    slow drifts cancel within a pair), and ``key_pairs``: every round's ratio, for the spread."""
    ratios = [a / b for a, b in zip(numerators, denominators)]
    return {key: statistics.median(ratios), f"{key}_pairs": [round(r, 4) for r in ratios]}
