"""Peak memory and time of the group colour cut alone (:class:`~coseg.models.GroupColourCut`, the default settings) on
one synthetic group per model input side: ``--images`` images of ``scale`` × the side (what ``coseg predict``
cuts), each a noisy blob on a noisy background, with probabilities at the model's side (confident inside and outside,
unsure along the blob's edge), upsampled by the cut as in ``coseg predict``. Each side runs in a process of its own,
so its peak resident memory (``ru_maxrss``, MiB) is that cut's alone; ``inputs_mb`` is the peak before the cut,
``fit_seconds`` the colour models' fit, ``cut_seconds`` the per-image cuts (one thread). Prints a table; ``--out``
writes it as JSON.

    python benchmarks/colour_cut_memory.py --sizes 224 512 1024 --out bench_out/colour_cut_memory.json
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Optional

from checks import at_least_one, check_writable, child_output, write_json


def synthetic_group(n: int, side: int, cut_side: int, seed: int = 0) -> tuple["torch.Tensor", "torch.Tensor"]:
    """uint8 images (n, 3, C, C) of a reddish blob on a green-grey background, and probabilities (n, 1, S, S)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    images, probs = [], []
    for _ in range(n):
        cy, cx, ry, rx = rng.uniform(0.35, 0.65, 2).tolist() + rng.uniform(0.15, 0.3, 2).tolist()
        yy, xx = np.mgrid[0:cut_side, 0:cut_side] / cut_side
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        image = np.where(blob[..., None], [200, 60, 40], [80, 140, 100]) + rng.normal(0, 25, (cut_side, cut_side, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8).transpose(2, 0, 1))
        sy, sx = np.mgrid[0:side, 0:side] / side
        distance = np.sqrt(((sy - cy) / ry) ** 2 + ((sx - cx) / rx) ** 2)
        probs.append((1 / (1 + np.exp((distance - 1) * 12))).astype(np.float32)[None])
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(probs))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(side: int, n: int) -> dict:
    """One group's colour cut at model input side ``side``; what it cost (run in a fresh process)."""
    from coseg.models import GroupColourCut

    colour = GroupColourCut()
    images, probs = synthetic_group(n, side, colour.size_for(side))
    inputs_mb = peak_mb()
    start = time.perf_counter()
    pixels, labels, up = colour.prepare(images, probs)
    models = colour.fit(pixels, labels)
    fitted = time.perf_counter()
    masks = colour.apply(models, pixels, labels, up)
    done = time.perf_counter()
    return {"image_size": side, "cut_side": colour.size_for(side), "images": n, "inputs_mb": round(inputs_mb),
            "peak_mb": round(peak_mb()), "fit_seconds": round(fitted - start, 2),
            "cut_seconds": round(done - fitted, 2), "foreground": round(float(masks.mean()), 4)}


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512, 1024],
                        help="model input sides (pixels) to measure, each in a process of its own (default: 224 512 "
                             "1024)")
    parser.add_argument("--images", type=int, default=16, help="images in the group (default: 16)")
    parser.add_argument("--out", type=Path, help="JSON file to write the rows to")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    at_least_one(parser, ("--sizes", args.sizes), ("--images", [args.images]))
    if args.child is not None:
        print(json.dumps(child(args.child, args.images)))
        return
    if args.out is not None:
        check_writable(args.out)
    rows = []
    print(f"{'size':>5} {'cut px':>6} {'inputs MiB':>10} {'peak MiB':>9} {'fit s':>7} {'cut s':>7}")
    for side in args.sizes:
        out = child_output([sys.executable, __file__, "--child", str(side), "--images", str(args.images)],
                           f"the measurement's process (size {side})")
        row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        print(f"{side:>5} {row['cut_side']:>6} {row['inputs_mb']:>10} {row['peak_mb']:>9} {row['fit_seconds']:>7} "
              f"{row['cut_seconds']:>7}", flush=True)
    if args.out is not None:
        write_json(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
