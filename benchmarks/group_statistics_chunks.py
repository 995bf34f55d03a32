"""Masks of a trained model with group statistics (``--group-statistics``) measured in chunks vs in one pass.

A group larger than ``STATISTICS_PIXELS`` pixels has its BatchNorm statistics measured in chunks
(:meth:`CosegNet._statistics_pass`): each layer pools its inputs over the chunks, but the deeper layers' inputs come
from layers normalised with one chunk's statistics, not the group's. This measures what that changes: each labelled
group of ``--groups`` scored (the model alone: no edge filter or colour cut) with the statistics in one pass and in
chunks of ``--images-per-chunk`` images (default: as many as ``STATISTICS_PIXELS`` allows at ``--size``), P/J per
group and the per-image J difference (points); an image or mask that cannot be scored is left out, printed and
listed in ``skipped_files``. Prints a table; ``--out`` writes it as JSON.

    python benchmarks/group_statistics_chunks.py --checkpoint bench_out/icoseg_default9_run/member0/best.safetensors \\
        --data ../shared/data/icoseg --groups 042,022,026,012 --size 224 --images-per-chunk 8 \\
        --out bench_out/group_statistics_chunks_224.json
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any, Optional

import torch

from apps.options import NAMES_FILE_HELP
from checks import check_writable, names_of, one_line, write_json
from coseg.checkpoints import load_for_inference
from coseg.data import find_samples
from coseg.evaluate import evaluate_samples
from coseg.models import GroupStatistics, cosegnet
from coseg.selection import choose_groups, samples_of

ONE_PASS = 1 << 62  # STATISTICS_PIXELS that no group reaches


def score(model: torch.nn.Module, samples: list, size: int, pixels: int,
          group_statistics: GroupStatistics) -> dict[str, Any]:
    """P/J (percent) per group, each image's J and the files left out (file: why) with the statistics measured
    ``pixels`` at a time."""
    default = cosegnet.STATISTICS_PIXELS
    cosegnet.STATISTICS_PIXELS = pixels
    try:
        evaluation = evaluate_samples(model, samples, size, torch.device("cpu"), progress=False,
                                      statistics=group_statistics)
    finally:
        cosegnet.STATISTICS_PIXELS = default
    per_group = {g: {"P": d["P"], "J": d["J"], "images": d["images"]}
                 for g, d in evaluation.summary["per_group"].items()}
    return {"P": evaluation.summary["P"], "J": evaluation.summary["J"], "per_group": per_group,
            "image_J": {f"{s.group}/{s.name}": 100 * s.J for s in evaluation.scores},
            "skipped": dict(evaluation.skipped)}


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a co-segmentation model file")
    parser.add_argument("--data", type=Path, required=True, help="labelled data set root")
    parser.add_argument("--layout", default="auto", help="its layout (default: detect)")
    parser.add_argument("--groups", required=True,
                        help=f"comma-separated group names (as coseg evaluate --groups). {NAMES_FILE_HELP}")
    parser.add_argument("--size", type=int, default=224, help="inference size in pixels")
    parser.add_argument("--images-per-chunk", type=int, default=0,
                        help="images per chunk of the chunked mode (0: as many as STATISTICS_PIXELS allows)")
    parser.add_argument("--strength", type=float, default=8.0, help="group statistics strength (--group-statistics)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    groups = names_of(parser, "--groups", args.groups)
    if args.images_per_chunk < 0:
        parser.error(f"--images-per-chunk must be >= 0 (0: as many as STATISTICS_PIXELS allows), got "
                     f"{args.images_per_chunk}")
    try:
        group_statistics = GroupStatistics(args.strength)
    except ValueError as e:
        parser.error(f"--strength: {e}")
    if args.out is not None:
        check_writable(args.out)
    with one_line():
        model, _ = load_for_inference(args.checkpoint, torch.device("cpu"), args.size)
        scan = find_samples(args.data, args.layout)
        samples = samples_of(scan, choose_groups(scan, None, None, groups))
    chunk_pixels = (args.images_per_chunk * args.size ** 2 if args.images_per_chunk > 0
                    else cosegnet.STATISTICS_PIXELS)
    modes = {"one pass": score(model, samples, args.size, ONE_PASS, group_statistics),
             "chunks": score(model, samples, args.size, chunk_pixels, group_statistics)}
    chunk_images = max(1, chunk_pixels // args.size ** 2)
    rows = {}
    for group, whole in modes["one pass"]["per_group"].items():
        chunked = modes["chunks"]["per_group"][group]
        names = [n for n in modes["one pass"]["image_J"] if n.startswith(f"{group}/")]
        gaps = [abs(modes["chunks"]["image_J"][n] - modes["one pass"]["image_J"][n]) for n in names]
        rows[group] = {"images": whole["images"], "chunked": whole["images"] > chunk_images,
                       "one_pass": {"P": whole["P"], "J": whole["J"]}, "chunks": {"P": chunked["P"], "J": chunked["J"]},
                       "image_dJ_mean": statistics.fmean(gaps), "image_dJ_max": max(gaps)}
    print(f"{args.size} px, chunks of {chunk_images} image(s), statistics strength {args.strength}")
    print(f"{'group':<40} {'images':>6} {'one pass J':>10} {'chunks J':>9} {'|dJ| mean':>10} {'|dJ| max':>9}")
    for group, row in rows.items():
        print(f"{group[:40]:<40} {row['images']:>6} {row['one_pass']['J']:>10.2f} {row['chunks']['J']:>9.2f} "
              f"{row['image_dJ_mean']:>10.2f} {row['image_dJ_max']:>9.2f}"
              + ("" if row["chunked"] else "  (one chunk)"))
    print(f"{'mean':<40} {'':>6} {modes['one pass']['J']:>10.2f} {modes['chunks']['J']:>9.2f}")
    skipped = {**modes["chunks"]["skipped"], **modes["one pass"]["skipped"]}
    if skipped:
        print(f"skipped {len(skipped)} file(s) that could not be scored (left out of the scores):")
        for file, why in skipped.items():
            print(f"  {file}: {why}")
    if args.out is not None:
        write_json(args.out, {"checkpoint": str(args.checkpoint), "size": args.size, "chunk_images": chunk_images,
                              "strength": args.strength, "P": {m: modes[m]["P"] for m in modes},
                              "J": {m: modes[m]["J"] for m in modes}, "groups": rows,
                              "skipped_files": [{"file": file, "reason": why} for file, why in skipped.items()]})


if __name__ == "__main__":
    main()
