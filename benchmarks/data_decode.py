"""Decode throughput of coseg.data.ImageCache: images/s for each (image size, threads), and a disk-cache reload.

    .venv/bin/python benchmarks/data_decode.py [--root ../shared/data/icoseg] [--sizes 128 224] [--threads 1 2]

Without real data at --root it measures a generated synthetic set instead (and says so).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from coseg.data import ImageCache, find_samples, make_synthetic_coseg

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "icoseg"


def timed_load(cache: ImageCache, samples: list) -> float:
    start = time.perf_counter()
    cache.load(samples)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--layout", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root
        if not root.is_dir():
            root = make_synthetic_coseg(Path(scratch) / "synthetic", num_groups=20, images_per_group=20, size=400)
            print(f"{args.root} not found: using 400 synthetic 400x400 images")
        samples = find_samples(root, args.layout).samples
        print(f"{len(samples)} samples under {root}")
        print(f"{'size':>5} {'threads':>7} {'seconds':>8} {'images/s':>9} {'skipped':>7}")
        for size in args.sizes:
            for threads in args.threads:
                cache = ImageCache(size, progress=False, threads=threads)
                seconds = timed_load(cache, samples)
                print(f"{size:>5} {threads:>7} {seconds:>8.2f} {len(cache) / seconds:>9.0f} {len(cache.skipped):>7}")
        size = args.sizes[-1]
        timed_load(ImageCache(size, cache_dir=Path(scratch) / "cache", progress=False), samples)
        reload = ImageCache(size, cache_dir=Path(scratch) / "cache", progress=False)
        seconds = timed_load(reload, samples)
        print(f"disk-cache reload at {size}px: {seconds:.2f} s, {reload.from_disk / seconds:.0f} images/s")


if __name__ == "__main__":
    main()
