"""metric/ against pytorch-metric-learning (PML): speed, memory and agreement of the same computations.

    .venv/bin/python benchmarks/metric_vs_pml.py --out bench_out/metric_vs_pml.json [--quick] [--threads N]

One function per measurement, each returning ``{key: value}`` for the JSON and listed in ``MEASUREMENTS``; the
headline keys and their goals are in ``GOALS`` (``REPORTED`` keys have no goal), the other keys
are the details they come from. Both libraries run in this one process on the same threads. Timings:
:func:`median_seconds` (warm-up runs, then the median of repeats) for the pixel loss; every ratio comes from the
compared calls timed side by side after a warm-up, in rounds whose order alternates (:func:`timing.rounds_in_turn`):
``<ratio>`` is the median over rounds of each round's ratio, ``<ratio>_ci95`` its 95 % interval (None below 6
rounds) and ``<ratio>_pairs`` every round's ratio (:func:`timing.paired_ratios`), in the JSON and the table; the
``*_seconds`` / ``*_ms`` details are medians over the rounds. Calls are repeated back to back until a timing lasts
``min_seconds`` (:func:`seconds_per_call`); the retrieval is timed one call per round in process CPU seconds.
``--rounds N`` sets every timing's number of rounds (default: 3 to 9, per measurement). Peak memory:
:func:`peak_allocated_bytes`. ``--quick`` shrinks the inputs so the whole run takes under a minute.

Both run on one intra-op thread unless ``--threads`` says otherwise: the ratios compare implementations, and one
thread keeps them reproducible on a machine shared with other jobs, where a parallel region waits for a
descheduled thread (milliseconds per op, measured up to 200× slower on small calls with 2 threads on 2 busy cores).
"""
from __future__ import annotations

import os

# Read when torch is imported: above kineto's highest level (5), so the profiler logs no start/stop and no-GPU lines.
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

import argparse
import math
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from metric.distances import SNRDistance
from metric.losses import ISTripletLoss, TripletMarginLoss, TripletUpperBoundLoss
from metric.miners import SemiHardMiner
from metric.retrieval import kmeans_nmi, retrieval_metrics

try:
    from pytorch_metric_learning import distances as pml_distances
    from pytorch_metric_learning import losses as pml_losses
    from pytorch_metric_learning import miners as pml_miners
    from pytorch_metric_learning import reducers as pml_reducers
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
except ModuleNotFoundError as missing:
    raise SystemExit(
        f"{missing}: this benchmark compares with pytorch-metric-learning, a dev extra: pip install -e '.[dev]'"
    ) from missing

if __package__:  # imported as benchmarks.metric_vs_pml from the repository root (the README's retrieval part alone)
    from .timing import paired_ratios, rounds_in_turn
else:  # run as a script: its folder is on sys.path
    from timing import paired_ratios, rounds_in_turn

# Headline keys: (comparison, threshold). A key in REPORTED has no goal; every other key is a detail.
GOALS: dict[str, tuple[str, float]] = {
    "snr_time_ratio": (">=", 2.0),
    "snr_mem_ratio": ("<=", 0.1),
    "upper_bound_speedup": (">=", 50.0),
    "upper_bound_scaling": ("<=", 1.5),
    "retrieval_speedup": (">=", 2.0),
    "retrieval_max_abs_diff": ("<=", 1e-6),
}
REPORTED = ("pixel_triplet_ms", "semi_hard_time_ratio")
MIB = 2**20


def median_seconds(
    fn: Callable[[], Any], repeats: int = 3, warmup: int = 1, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; return (median seconds by ``clock``, last
    result)."""
    for _ in range(warmup):
        fn()
    times, result = [], None
    for _ in range(repeats):
        start = clock()
        result = fn()
        times.append(clock() - start)
    return statistics.median(times), result


def seconds_per_call(fns: Sequence[Callable[[], Any]], rounds: int = 5, min_seconds: float = 0.2) -> list[list[float]]:
    """Seconds per call of each of ``fns`` in each of ``rounds`` rounds, side by side (one list per function).

    A first call of each function (its warm-up, timed again if it was short) sets how many calls in a row make
    one timing last about ``min_seconds``, so a sub-millisecond call is not lost in timer and scheduling noise;
    then :func:`timing.rounds_in_turn` times every function in each round, in an order that alternates.
    """
    calls = []
    for fn in fns:
        elapsed = 0.0
        for _ in range(2):
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        calls.append(max(1, math.ceil(min_seconds / elapsed)))

    def timing(fn: Callable[[], Any], count: int) -> Callable[[], float]:
        def seconds() -> float:
            start = time.perf_counter()
            for _ in range(count):
                fn()
            return (time.perf_counter() - start) / count
        return seconds

    return rounds_in_turn([timing(fn, count) for fn, count in zip(fns, calls)], rounds)


def peak_allocated_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes that tensors allocated during ``fn()`` hold at once (its output included, its inputs not).

    Read from torch's profiler (``profile_memory``): every allocation and free of torch's CPU allocator is an
    event with a signed size, and the peak is the running sum's maximum. This counts exactly the tensors an
    implementation creates, deterministically, whoever else runs on the machine. The growth of the process's
    peak resident size (``ru_maxrss``, even in a fresh process per call) would mix in the first call's one-time
    thread-pool and library start-up memory and miss pages glibc reuses, noise as large as a small footprint
    (ours is 36 MiB at full size). Not counted: memory a library takes outside torch's allocator (e.g. BLAS
    workspace), which does not grow with N·M·D.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"),
        key=lambda event: event.start_ns(),
    )
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def clustered_embeddings(
    n: int, dim: int, classes: int, seed: int = 0, balanced: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian classes around random centres, overlapping enough that R@1 and MAP@R are well below 1.
    ``balanced``: labels cycle through the classes (n / classes samples each, as in a P×K batch)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes if balanced else torch.randint(0, classes, (n,), generator=g)
    centres = torch.randn(classes, dim, generator=g)
    return centres[labels] + 1.8 * torch.randn(n, dim, generator=g), labels


def measure_retrieval(quick: bool, rounds: Optional[int] = None) -> dict[str, Any]:
    """R@1, MAP@R and NMI of 100,000 × 128 embeddings in 100 classes (10,000 with --quick): our one streaming
    pass vs PML's AccuracyCalculator with k="max_bin_count" (the smallest k that makes its MAP@R exact), and the
    NMI alone of each, all four timed side by side in ``rounds`` rounds (default 3); a warm-up call of each first
    with --quick only (at full size a call takes minutes and warm-up effects are negligible).

    Timed in process CPU seconds (all of the process's threads): a full-size call takes a minute or more, long
    enough for other jobs on a shared machine to take the cores away for a while, which wall time would count
    (ratios from 1.4 to 2.5 in back-to-back runs measured so), CPU time not."""
    n = 10_000 if quick else 100_000
    x, y = clustered_embeddings(n, 128, 100)
    calculator = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "NMI"), k="max_bin_count", device=torch.device("cpu")
    )
    # The NMI share: both run faiss k-means with the same settings (k = classes, niter=20, seed 1234).
    nmi_calculator = AccuracyCalculator(include=("NMI",), device=torch.device("cpu"))
    calls = {"pml": lambda: calculator.get_accuracy(x, y), "ours": lambda: retrieval_metrics(x, y, ks=(1,)),
             "pml_nmi": lambda: nmi_calculator.get_accuracy(x, y), "ours_nmi": lambda: kmeans_nmi(x, y)}
    last: dict[str, Any] = {}

    def cpu_seconds(name: str) -> Callable[[], float]:
        def seconds() -> float:
            elapsed, last[name] = median_seconds(calls[name], repeats=1, warmup=0, clock=time.process_time)
            return elapsed
        return seconds

    if quick:
        for call in calls.values():
            call()
    pml_s, ours_s, pml_nmi_s, ours_nmi_s = rounds_in_turn([cpu_seconds(name) for name in calls], rounds or 3)
    pml, ours = last["pml"], last["ours"]
    return {
        "retrieval_n": n,
        "retrieval_pml_seconds": statistics.median(pml_s),
        "retrieval_ours_seconds": statistics.median(ours_s),
        **paired_ratios(pml_s, ours_s, "retrieval_speedup"),
        "retrieval_pml_nmi_seconds": statistics.median(pml_nmi_s),
        "retrieval_ours_nmi_seconds": statistics.median(ours_nmi_s),
        **paired_ratios([p - pn for p, pn in zip(pml_s, pml_nmi_s)], [o - on for o, on in zip(ours_s, ours_nmi_s)],
                        "retrieval_speedup_without_nmi"),
        "retrieval_max_abs_diff": max(
            abs(ours["R@1"] - pml["precision_at_1"]), abs(ours["MAP@R"] - pml["mean_average_precision_at_r"])
        ),
        "retrieval_nmi_abs_diff": abs(ours["NMI"] - pml["NMI"]),
        "retrieval_R@1": ours["R@1"],
        "retrieval_MAP@R": ours["MAP@R"],
        "retrieval_NMI": ours["NMI"],
    }


def snr_calls(quick: bool) -> tuple[int, int, Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    """(N, D, ours, PML): pairwise SNR distances of N = M = 2048 rows of D = 512 (512 × 128 with --quick).
    PML's ``SNRDistance`` runs with ``normalize_embeddings=False``, so both compute the same matrix."""
    n, dim = (512, 128) if quick else (2048, 512)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
    ours, pml = SNRDistance(), pml_distances.SNRDistance(normalize_embeddings=False)
    return n, dim, lambda: ours.pairwise(x, y), lambda: pml(x, y)


def measure_snr_time(quick: bool, rounds: Optional[int] = None) -> dict[str, Any]:
    """PML's time / ours for the same N×M SNR matrix in ``rounds`` paired rounds (default 5, 3 at full size), and how
    far the two matrices differ (relative)."""
    n, dim, ours, pml = snr_calls(quick)
    # PML's call takes tens of seconds at full size on one core: few rounds.
    pml_s, ours_s = seconds_per_call([pml, ours], rounds=rounds or (5 if quick else 3))
    expected = pml()
    return {
        "snr_n": n,
        "snr_dim": dim,
        "snr_pml_seconds": statistics.median(pml_s),
        "snr_ours_seconds": statistics.median(ours_s),
        **paired_ratios(pml_s, ours_s, "snr_time_ratio"),
        "snr_max_rel_diff": float(((ours() - expected).abs() / expected.abs()).max()),
    }


def measure_snr_memory(quick: bool, rounds: Optional[int] = None) -> dict[str, float]:
    """Our peak extra memory / PML's for the same SNR call (:func:`peak_allocated_bytes`). PML's holds the
    N×M×D differences (8 GiB at full size); ours one matmul's N×M output and a few N×D or N×M temporaries.
    ``rounds`` is not used: the count is deterministic, measured once."""
    _, _, ours, pml = snr_calls(quick)
    ours_bytes, pml_bytes = peak_allocated_bytes(ours), peak_allocated_bytes(pml)
    return {
        "snr_ours_peak_mib": ours_bytes / MIB,
        "snr_pml_peak_mib": pml_bytes / MIB,
        "snr_mem_ratio": ours_bytes / pml_bytes,
    }


def upper_bound_step(
    n: int, num_classes: int = 32, dim: int = 128
) -> tuple[Callable[[], float], torch.Tensor, torch.Tensor]:
    """(forward+backward of our :class:`TripletUpperBoundLoss`, embeddings, labels) on a P×K batch of ``n``
    L2-normalised embeddings (``num_classes`` classes, n / num_classes each), margin 0.2."""
    x, labels = clustered_embeddings(n, dim, num_classes, balanced=True)
    x = F.normalize(x, dim=1).requires_grad_(True)
    loss = TripletUpperBoundLoss(num_classes, dim, margin=0.2)
    return partial(forward_backward, loss, x, labels), x, labels


def forward_backward(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                     labels: torch.Tensor) -> float:
    """One training step's worth of ``loss``: forward, backward into the leaf ``x``; returns the loss value."""
    x.grad = None
    value = loss(x, labels)
    value.backward()
    return float(value.detach())


def measure_upper_bound_speedup(quick: bool, rounds: Optional[int] = None) -> dict[str, Any]:
    """PML's ``TripletMarginLoss`` over all triplets (its default, no miner) vs our upper bound, forward +
    backward, on one P×K batch: N = 1024 = 32 classes × 32 (512 = 32 × 16 with --quick), D = 128,
    L2-normalised, margin 0.2, in ``rounds`` paired rounds (default 5, 3 at full size). PML gets squared Euclidean
    distances and a plain mean over all triplets, so it computes exactly the mean triplet loss our loss bounds (its
    value ≤ ours: both are in the JSON)."""
    n = 512 if quick else 1024
    ours, x, labels = upper_bound_step(n)
    pml_loss = pml_losses.TripletMarginLoss(
        margin=0.2,
        distance=pml_distances.LpDistance(normalize_embeddings=False, power=2),
        reducer=pml_reducers.MeanReducer(),
    )
    pml = partial(forward_backward, pml_loss, x, labels)
    pml_s, ours_s = seconds_per_call([pml, ours], rounds=rounds or (5 if quick else 3))
    return {
        "upper_bound_n": n,
        "upper_bound_pml_seconds": statistics.median(pml_s),
        "upper_bound_ours_seconds": statistics.median(ours_s),
        **paired_ratios(pml_s, ours_s, "upper_bound_speedup"),
        "upper_bound_pml_mean_triplet_loss": pml(),
        "upper_bound_ours_bound": ours(),
    }


def measure_upper_bound_scaling(quick: bool, rounds: Optional[int] = None) -> dict[str, Any]:
    """Our upper bound's forward + backward time per sample at N = 65,536 / at N = 256 (16,384 / 256 with
    --quick), 32 classes, D = 128 both, in ``rounds`` paired rounds (default 5, 7 at full size). Each timing repeats
    the call until it lasts ≥ 0.3 s, so the small batch's time is that of many calls, not one call's timer noise; it
    still carries the fixed cost of a call (~30 small ops and the input checks), which a linear loss amortises at the
    large N."""
    small_n, large_n = 256, 16_384 if quick else 65_536
    small, large = upper_bound_step(small_n)[0], upper_bound_step(large_n)[0]
    small_s, large_s = seconds_per_call([small, large], rounds=rounds or (5 if quick else 7),
                                        min_seconds=0.1 if quick else 0.3)
    small_per_sample, large_per_sample = [s / small_n for s in small_s], [s / large_n for s in large_s]
    return {
        "upper_bound_small_n": small_n,
        "upper_bound_large_n": large_n,
        "upper_bound_small_us_per_sample": statistics.median(small_per_sample) * 1e6,
        "upper_bound_large_us_per_sample": statistics.median(large_per_sample) * 1e6,
        **paired_ratios(large_per_sample, small_per_sample, "upper_bound_scaling"),
    }


def measure_pixel_triplet(quick: bool, rounds: Optional[int] = None) -> dict[str, float]:
    """Our pixel sampler + IS-Triplet (``ISTripletLoss()`` defaults: hard sampling with the predicted
    probabilities, 64 pixels per class per image, batch-hard triplets, margin 0.2), forward + backward, on
    B = 8, D = 32, 256 × 256: L2-normalised pixel embeddings, one elliptic object per image, probabilities
    that mostly agree with the masks, 2 groups of 4 images (positives across the images of a group); the median of
    ``rounds`` timed calls (default 3, 7 at full size)."""
    b, dim, size = 8, 32, 256
    g = torch.Generator().manual_seed(0)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre_row, centre_col = (size / 4 + size / 2 * torch.rand(2, b, 1, 1, generator=g)).unbind(0)
    radius = size / 6 + size / 8 * torch.rand(b, 1, 1, generator=g)
    masks = ((rows - centre_row) ** 2 + (cols - centre_col) ** 2 < radius**2).long()
    probabilities = torch.sigmoid(2.0 * (2 * masks - 1) + 1.5 * torch.randn(b, size, size, generator=g))
    embeddings = F.normalize(torch.randn(b, dim, size, size, generator=g), dim=1).requires_grad_(True)
    groups = torch.arange(b) // 4
    loss = ISTripletLoss()

    def step() -> None:
        embeddings.grad = None
        loss(embeddings, masks, groups=groups, probabilities=probabilities).backward()

    seconds, _ = median_seconds(step, repeats=rounds or (3 if quick else 7))
    return {"pixel_triplet_ms": seconds * 1e3}


def measure_semi_hard(quick: bool, rounds: Optional[int] = None) -> dict[str, Any]:
    """Triplet margin loss over every semi-hard triplet (margin 0.1 for the loss and the miner), forward + backward on
    one P×K batch of random L2-normalised embeddings (8 classes × 4, D = 1280, an EfficientNet feature's size, as
    from a head early in training: thousands of semi-hard triplets): PML (``TripletMarginMiner("semihard")`` +
    ``TripletMarginLoss``), ours summed from the miner's pair counts (what ``TripletMarginLoss(miner=SemiHardMiner)``
    does), and ours over the listed triplets (the per-triplet losses, then their mean); side by side in ``rounds``
    rounds (default 5, 9 at full size)."""
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(32, 1280, generator=g), dim=1).requires_grad_(True)
    labels = torch.arange(32) % 8
    pml_miner = pml_miners.TripletMarginMiner(margin=0.1, type_of_triplets="semihard")
    pml_loss = pml_losses.TripletMarginLoss(margin=0.1)  # its default reducer averages the non-zero losses: all here
    counted = TripletMarginLoss(margin=0.1, miner=SemiHardMiner(margin=0.1))
    listed = TripletMarginLoss(margin=0.1, miner=SemiHardMiner(margin=0.1), reduction="none")
    steps = [partial(forward_backward, lambda e, y: pml_loss(e, y, pml_miner(e, y)), x, labels),
             partial(forward_backward, counted, x, labels),
             partial(forward_backward, lambda e, y: listed(e, y).mean(), x, labels)]
    pml_s, counted_s, listed_s = seconds_per_call(steps, rounds=rounds or (5 if quick else 9))
    return {
        "semi_hard_triplets": len(SemiHardMiner(margin=0.1)(x, labels)),
        "semi_hard_pml_ms": statistics.median(pml_s) * 1e3,
        "semi_hard_counted_ms": statistics.median(counted_s) * 1e3,
        "semi_hard_listed_ms": statistics.median(listed_s) * 1e3,
        **paired_ratios(pml_s, counted_s, "semi_hard_time_ratio"),
        "semi_hard_abs_diff": abs(steps[0]() - steps[1]()),
    }


MEASUREMENTS: list[Callable[[bool, Optional[int]], dict[str, Any]]] = [
    measure_snr_time,
    measure_snr_memory,
    measure_upper_bound_speedup,
    measure_upper_bound_scaling,
    measure_retrieval,
    measure_pixel_triplet,
    measure_semi_hard,
]


def goal_met(key: str, value: float) -> str:
    """'yes' / 'NO' for a key with a goal, '' otherwise."""
    if key not in GOALS:
        return ""
    comparison, threshold = GOALS[key]
    return "yes" if (value >= threshold if comparison == ">=" else value <= threshold) else "NO"


def spread(results: dict[str, Any], key: str) -> str:
    """A paired ratio's 95 % interval and every round's ratio (:func:`timing.paired_ratios`), '' for other keys."""
    if f"{key}_pairs" not in results:
        return ""
    return f"95% CI {results[f'{key}_ci95']}  rounds {results[f'{key}_pairs']}"


def print_table(results: dict[str, Any]) -> None:
    """The headline keys (goal, met or not, a paired ratio's spread), then every other key as a detail (a paired
    detail ratio with its spread)."""
    headline = [key for key in results if key in GOALS or key in REPORTED]
    ratios = [key for key in results if f"{key}_pairs" in results]
    spreads = {f"{key}_{part}" for key in ratios for part in ("ci95", "pairs")}
    details = [key for key in results if key not in headline and key not in spreads]
    width = max(len(key) for key in results)
    print(f"{'measurement':<{width}}  {'value':>10}  {'goal':<9}  {'met':<3}  spread (median of paired rounds)")
    for key in headline:
        goal = f"{GOALS[key][0]} {GOALS[key][1]:g}" if key in GOALS else "(report)"
        print(f"{key:<{width}}  {results[key]:>10.4g}  {goal:<9}  {goal_met(key, results[key]):<3}  "
              f"{spread(results, key)}".rstrip())
    print("\ndetails")
    for key in details:
        value = results[key]
        line = f"{key:<{width}}  {value:>10.4g}" if isinstance(value, float) else f"{key:<{width}}  {value!s:>10}"
        print(f"{line}  {spread(results, key)}".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write the results to")
    parser.add_argument("--quick", action="store_true", help="smaller inputs: the whole run under a minute")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for both libraries (default 1: reproducible on a shared machine)")
    parser.add_argument("--rounds", type=int,
                        help="paired rounds of every timing (default: 3 to 9 per measurement, bounded for --quick)")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    # the script's sibling (imported here: ``from benchmarks.metric_vs_pml import ...`` must work without it)
    from checks import check_writable, write_json

    check_writable(args.out)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # the pixel sampler draws from the global generator
    results: dict[str, Any] = {"quick": args.quick, "torch_threads": torch.get_num_threads()}
    for measure in MEASUREMENTS:
        results.update(measure(args.quick, args.rounds))
    print_table(results)
    write_json(args.out, results, indent=2)


if __name__ == "__main__":
    main()
