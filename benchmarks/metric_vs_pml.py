"""metric/ against pytorch-metric-learning (PML): speed and agreement of the same computations.

    .venv/bin/python benchmarks/metric_vs_pml.py --out bench_out/metric_vs_pml.json [--quick]

One function per measurement, each returning ``{key: value}`` for the JSON; add new measurements (SNR distance,
triplet upper bound, pixel triplets, ...) as functions beside these and list them in ``MEASUREMENTS``. Timings:
:func:`median_seconds` (warm-up runs, then the median of repeats), single process, both libraries on the same
threads. ``--quick`` shrinks the inputs so the whole run takes under a minute.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from metric.retrieval import retrieval_metrics


def median_seconds(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> tuple[float, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; return (median seconds, last result)."""
    for _ in range(warmup):
        fn()
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def clustered_embeddings(n: int, dim: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian classes around random centres, overlapping enough that R@1 and MAP@R are well below 1."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    centres = torch.randn(classes, dim, generator=g)
    return centres[labels] + 1.8 * torch.randn(n, dim, generator=g), labels


def measure_retrieval(quick: bool) -> dict[str, float]:
    """R@1, MAP@R and NMI of 100,000 × 128 embeddings in 100 classes (10,000 with --quick): our one streaming
    pass vs PML's AccuracyCalculator with k="max_bin_count" (the smallest k that makes its MAP@R exact)."""
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    n = 10_000 if quick else 100_000
    x, y = clustered_embeddings(n, 128, 100)
    calculator = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "NMI"), k="max_bin_count", device=torch.device("cpu")
    )
    # A full-size run takes minutes: one timed run each (warm-up effects are negligible at that scale).
    runs = {"repeats": 3, "warmup": 1} if quick else {"repeats": 1, "warmup": 0}
    pml_seconds, pml = median_seconds(lambda: calculator.get_accuracy(x, y), **runs)
    ours_seconds, ours = median_seconds(lambda: retrieval_metrics(x, y, ks=(1,)), **runs)
    return {
        "retrieval_n": n,
        "retrieval_pml_seconds": pml_seconds,
        "retrieval_ours_seconds": ours_seconds,
        "retrieval_speedup": pml_seconds / ours_seconds,
        "retrieval_max_abs_diff": max(
            abs(ours["R@1"] - pml["precision_at_1"]), abs(ours["MAP@R"] - pml["mean_average_precision_at_r"])
        ),
        "retrieval_nmi_abs_diff": abs(ours["NMI"] - pml["NMI"]),
        "retrieval_R@1": ours["R@1"],
        "retrieval_MAP@R": ours["MAP@R"],
        "retrieval_NMI": ours["NMI"],
    }


MEASUREMENTS: list[Callable[[bool], dict[str, float]]] = [measure_retrieval]


def print_table(results: dict[str, float]) -> None:
    width = max(len(key) for key in results)
    print(f"{'measurement':<{width}}  value")
    for key, value in results.items():
        print(f"{key:<{width}}  {value:.6g}" if isinstance(value, float) else f"{key:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write the results to")
    parser.add_argument("--quick", action="store_true", help="smaller inputs: the whole run under a minute")
    args = parser.parse_args()
    results: dict[str, float] = {"quick": args.quick, "torch_threads": torch.get_num_threads()}
    for measure in MEASUREMENTS:
        results.update(measure(args.quick))
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
