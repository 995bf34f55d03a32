"""Peak memory of measuring a group's BatchNorm statistics (``--group-statistics``,
:meth:`CosegNet._statistics_pass`) on one synthetic group: in one pass over the whole group (what it did before
``STATISTICS_PIXELS``) vs in chunks of at most ``STATISTICS_PIXELS`` pixels. An untrained model (``weights=None``,
two consensus levels: no download); random images. Each mode runs in a process of its own (one thread, both at once),
so its peak resident memory (``ru_maxrss``, MiB) is that measurement's alone; ``inputs_mb`` is the peak before it.
Prints a table; ``--out`` writes it as JSON.

    python benchmarks/group_statistics_memory.py --images 32 --size 1024 --out bench_out/group_statistics_memory.json
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from checks import at_least_one, check_writable, fail, model_side, write_json

MODES = {"one pass": 1 << 62, "chunks": None}  # STATISTICS_PIXELS per mode (None: the default)


def child(images: int, size: int, pixels: Optional[int]) -> dict:
    """Measure the statistics once (run in a fresh process); what it cost."""
    import torch

    from coseg.models import GroupStatistics, cosegnet, create_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    if pixels is not None:
        cosegnet.STATISTICS_PIXELS = pixels
    model = create_model(weights=None, group_levels=2).eval()
    x = torch.rand(images, 3, size, size)
    inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with torch.inference_mode(), GroupStatistics(8.0).adapted(model, lambda: model._statistics_pass(x), images):
        seconds = time.perf_counter() - start
    return {"inputs_mb": inputs, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": seconds, "pixels_per_pass": cosegnet.STATISTICS_PIXELS}


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="images in the group (default: 32)")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels (default: 1024)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write the measurements to")
    parser.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    at_least_one(parser, ("--images", [args.images]), ("--size", [args.size]))
    model_side(parser, "--size", args.size)
    if args.child is not None:
        print(json.dumps(child(args.images, args.size, MODES[args.child])))
        return
    if args.out is not None:
        check_writable(args.out)
    runs = {mode: subprocess.Popen([sys.executable, __file__, "--images", str(args.images), "--size", str(args.size),
                                    "--child", mode], stdout=subprocess.PIPE, text=True) for mode in MODES}
    results = {}
    try:
        for mode, process in runs.items():
            out, _ = process.communicate()
            if process.returncode:
                fail(f"{mode}: the measurement process failed (exit {process.returncode}; its error is above)")
            results[mode] = json.loads(out.strip().splitlines()[-1])
    finally:  # a failure or an interrupt stops the other measurement too (it may hold gigabytes for minutes)
        for process in runs.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    print(f"{args.images} images of {args.size}×{args.size}")
    print(f"{'mode':<10} {'inputs MB':>10} {'peak MB':>10} {'seconds':>9}")
    for mode, r in results.items():
        print(f"{mode:<10} {r['inputs_mb']:>10.0f} {r['peak_mb']:>10.0f} {r['seconds']:>9.1f}")
    if args.out is not None:
        write_json(args.out, {"images": args.images, "size": args.size, "modes": results})


if __name__ == "__main__":
    main()
