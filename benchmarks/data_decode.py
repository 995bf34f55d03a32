"""Decode throughput of coseg.data.ImageCache: images/s for each (image size, threads), and a disk-cache reload.

    .venv/bin/python benchmarks/data_decode.py [--root ../shared/data/icoseg] [--sizes 128 224] [--threads 1 2] \
        [--out bench_out/data_decode.json]

Without --root it measures ../shared/data/icoseg, or a generated synthetic set when that is not there (and says
so). Each size's rows are measured one after the other in this process; ``speedup`` is a row's images/s over the
first --threads value's at that size, ``reload_speedup`` the disk-cache reload's over the decode's (the last size,
one thread).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Optional

from checks import check_writable, fail, one_line, write_json
from coseg.data import ImageCache, find_samples, make_synthetic_coseg

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "icoseg"


def timed_load(cache: ImageCache, samples: list) -> float:
    start = time.perf_counter()
    cache.load(samples)
    return time.perf_counter() - start


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="data set to decode (default: ../shared/data/icoseg if there)")
    parser.add_argument("--layout", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, help="JSON file to write the measurements to")
    args = parser.parse_args(argv)
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
        print(f"{len(samples)} samples under {root}")
        print(f"{'size':>5} {'threads':>7} {'seconds':>8} {'images/s':>9} {'speedup':>8} {'skipped':>7}")
        rows = []
        for size in args.sizes:
            first = None
            for threads in args.threads:
                cache = ImageCache(size, progress=False, threads=threads)
                seconds = timed_load(cache, samples)
                rate = len(cache) / seconds
                first = rate if first is None else first
                speedup = rate / first if first else 0.0
                rows.append({"size": size, "threads": threads, "seconds": seconds, "images_per_s": rate,
                             "speedup": speedup, "skipped": len(cache.skipped)})
                print(f"{size:>5} {threads:>7} {seconds:>8.2f} {rate:>9.0f} {speedup:>8.2f} {len(cache.skipped):>7}")
        size = args.sizes[-1]
        decode = timed_load(ImageCache(size, cache_dir=Path(scratch) / "cache", progress=False), samples)
        reload = ImageCache(size, cache_dir=Path(scratch) / "cache", progress=False)
        seconds = timed_load(reload, samples)
        print(f"disk-cache reload at {size}px: {seconds:.2f} s, {reload.from_disk / seconds:.0f} images/s, "
              f"{decode / seconds:.1f}x the decode into the cache ({decode:.2f} s)")
    if args.out is not None:
        write_json(args.out, {"root": str(root), "samples": len(samples), "rows": rows,
                              "reload": {"size": size, "decode_seconds": decode, "reload_seconds": seconds,
                                         "images_per_s": reload.from_disk / seconds,
                                         "reload_speedup": decode / seconds}})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
