"""Decode throughput of coseg.data.ImageCache: images/s for each (image size, threads), and a disk-cache reload.

    .venv/bin/python benchmarks/data_decode.py [--root ../shared/data/icoseg] [--sizes 128 224] [--threads 1 2] \\
        [--rounds 3] [--out bench_out/data_decode.json]

Without --root it measures ../shared/data/icoseg, or a generated synthetic set when that is not there (and says
so). At each size, one untimed load first (the files into the OS's page cache, the decoders started), then
``--rounds`` rounds that decode once with each --threads value side by side, in alternating order
(:func:`timing.rounds_in_turn`). ``seconds`` and ``images_per_s`` are a row's medians over the rounds; ``speedup``
the median over rounds of its images/s over the first --threads value's in the same round (``speedup_ci95``: the
median's 95 % interval, ``speedup_pairs``: every round's). ``reload_speedup``: the same for the disk-cache reload
against the decode into the cache (the last size, one thread). A file that cannot be decoded is skipped (a row's
``skipped``: how many), printed and listed with why in ``skipped_files``.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from checks import at_least_one, check_writable, fail, one_line, write_json
from coseg.data import ImageCache, find_samples, make_synthetic_coseg, printable
from timing import paired_ratios, paired_rounds, rounds_in_turn

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "icoseg"


def timed_load(cache: ImageCache, samples: list) -> float:
    """Seconds of ``cache.load(samples)``."""
    start = time.perf_counter()
    cache.load(samples)
    return time.perf_counter() - start


def decode_rows(samples: list, size: int, threads: list[int],
                rounds: int) -> tuple[list[dict], list[tuple[Path, str]]]:
    """One row per ``threads`` value at ``size``, measured side by side after one untimed load; and the files that
    load skipped (file, why)."""
    first = ImageCache(size, progress=False, threads=threads[0])
    timed_load(first, samples)
    caches: dict[int, ImageCache] = {}

    def measure(i: int) -> Callable[[], float]:
        def run() -> float:
            caches[i] = ImageCache(size, progress=False, threads=threads[i])
            return timed_load(caches[i], samples)
        return run

    seconds = rounds_in_turn([measure(i) for i in range(len(threads))], rounds)
    return [{"size": size, "threads": t, "seconds": statistics.median(s),
             "images_per_s": len(caches[i]) / statistics.median(s), **paired_ratios(seconds[0], s, "speedup"),
             "skipped": len(caches[i].skipped)} for i, (t, s) in enumerate(zip(threads, seconds))], first.skipped


def reload_row(samples: list, size: int, scratch: Path, rounds: int) -> dict:
    """The decode into a disk cache (a new folder each time) against a reload of a filled one, side by side."""
    filled = scratch / "cache"
    timed_load(ImageCache(size, cache_dir=filled, progress=False), samples)  # fills it; untimed
    reloaded: list[ImageCache] = []

    def decode() -> float:
        return timed_load(ImageCache(size, cache_dir=Path(tempfile.mkdtemp(dir=scratch)), progress=False), samples)

    def reload() -> float:
        reloaded.append(ImageCache(size, cache_dir=filled, progress=False))
        return timed_load(reloaded[-1], samples)

    decode_s, reload_s = paired_rounds(decode, reload, rounds)
    return {"size": size, "decode_seconds": statistics.median(decode_s), "reload_seconds": statistics.median(reload_s),
            "images_per_s": reloaded[-1].from_disk / statistics.median(reload_s),
            **paired_ratios(decode_s, reload_s, "reload_speedup")}


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="data set to decode (default: ../shared/data/icoseg if there)")
    parser.add_argument("--layout", default="auto", help="the data set's layout, as coseg's --layout (default: auto)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224],
                        help="image sizes (pixels, square) to decode to (default: 128 224)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="decoding threads to compare; speedup is against the first (default: 1 2)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="side-by-side rounds per size; medians over them (default: 3; 1 for a quick look)")
    parser.add_argument("--out", type=Path, help="JSON file to write the measurements to")
    args = parser.parse_args(argv)
    at_least_one(parser, ("--sizes", args.sizes), ("--threads", args.threads), ("--rounds", [args.rounds]))
    if args.root is not None and not args.root.is_dir():
        fail(f"--root {args.root}: folder not found")
    if args.out is not None:
        check_writable(args.out)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or DEFAULT_ROOT
        if not root.is_dir():
            root = make_synthetic_coseg(Path(scratch) / "synthetic", num_groups=20, images_per_group=20, size=400)
            print(f"{DEFAULT_ROOT} not found: using 400 synthetic 400x400 images")
        with one_line():
            samples = find_samples(root, args.layout).samples
        print(f"{len(samples)} samples under {root}; medians of {args.rounds} side-by-side round(s)")
        print(f"{'size':>5} {'threads':>7} {'seconds':>8} {'images/s':>9} {'speedup':>8} {'skipped':>7}  "
              "speedup per round")
        rows, skipped = [], {}
        for size in args.sizes:
            size_rows, size_skipped = decode_rows(samples, size, args.threads, args.rounds)
            skipped.update((printable(path), why) for path, why in size_skipped)
            for row in size_rows:
                rows.append(row)
                print(f"{size:>5} {row['threads']:>7} {row['seconds']:>8.2f} {row['images_per_s']:>9.0f} "
                      f"{row['speedup']:>8.2f} {row['skipped']:>7}  {row['speedup_pairs']}")
        for path, why in skipped.items():
            print(f"skipped (not decoded, left out of images/s): {path}: {why}")
        reload = reload_row(samples, args.sizes[-1], Path(scratch), args.rounds)
        print(f"disk-cache reload at {reload['size']}px: {reload['reload_seconds']:.2f} s, "
              f"{reload['images_per_s']:.0f} images/s, {reload['reload_speedup']:.1f}x the decode into the cache "
              f"({reload['decode_seconds']:.2f} s; per round {reload['reload_speedup_pairs']})")
    if args.out is not None:
        write_json(args.out, {"root": str(root), "samples": len(samples), "rounds": args.rounds, "rows": rows,
                              "reload": reload,
                              "skipped_files": [{"file": file, "reason": why} for file, why in skipped.items()]})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
