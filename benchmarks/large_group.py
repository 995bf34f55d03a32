"""Peak memory and time of predicting one large group: read whole vs read in chunks (``predict_dataset``'s
``stream_above``), with the default inference (edge filter + group colour cut), on groups of several sizes.

The group is the first N images of ``--images-from`` (all its subfolders' images as one flat group, as a user's
folder of photos would be; by default iCoseg's 643 images when ``../shared/data`` is there, else synthetic images). Each
measurement runs in a process of its own, so its peak resident memory (``ru_maxrss``) is that prediction's alone.
Each size is measured in ``--rounds`` rounds of whole and chunks side by side (their order alternating,
:func:`timing.rounds_in_turn`): a mode's ``seconds``, ``peak_mb`` and ``model_loaded_mb`` are medians over the rounds
(every round's in ``runs``; MB = MiB), ``time_ratio`` the median over rounds of chunks / whole seconds
(``time_ratio_ci95``, ``time_ratio_pairs``: its 95 % interval and every round's). An image that cannot be read is
left out of the group (as ``coseg predict`` does), printed and listed in its mode's ``skipped`` (``results``: the
masks made).
Give a trained model (``--checkpoint``): an untrained one predicts ~0.5 everywhere, which leaves the colour cut
nothing sure to start from and makes its time meaningless (memory is still right). The JSON's ``members`` and
``image_size`` are those of the model measured (a ``--checkpoint``'s own, not ``--members``/``--image-size``).

    python benchmarks/large_group.py --checkpoint runs/ens/d10/best.safetensors --images 100 200 400 \\
        --out bench_out/large_group.json
    python benchmarks/large_group.py --images 8 --members 1 --image-size 64 --rounds 1   # a quick look
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from checks import at_least_one, check_writable, child_output, fail, model_side, one_line, write_json
from timing import paired_ratios, rounds_in_turn

WHOLE = 1 << 30  # stream_above that keeps every group whole
DEFAULT_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "icoseg" / "images"


def child(folder: Path, stream_above: int, checkpoint: Optional[Path], members: int, image_size: int) -> dict:
    """Predict the group in ``folder`` once; what it cost (run in a fresh process)."""
    import torch

    from coseg.checkpoints import load_for_inference
    from coseg.inference import images_for, predict_dataset
    from coseg.models import CosegEnsemble, EdgeFilter, GroupColourCut, create_model

    if checkpoint is not None:
        model, image_size = load_for_inference(checkpoint, torch.device("cpu"))
    else:
        model = CosegEnsemble([create_model(group_levels=2, semantic_prior=True) for _ in range(members)]).eval()
        model = model.to(memory_format=torch.channels_last)
    paths = sorted(folder.glob("*.jpg"))
    colour = GroupColourCut()
    dataset = images_for(paths, image_size, colour)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    predicted = [mask for _, mask in predict_dataset(model, dataset, torch.device("cpu"), original_size=True,
                                                     groups=[0] * len(paths), edges=EdgeFilter(), colour=colour,
                                                     stream_above=stream_above)]
    seconds = time.perf_counter() - start
    skipped = [mask for mask in predicted if isinstance(mask, str)]  # why, naming the file
    return {"seconds": seconds, "results": len(predicted) - len(skipped), "skipped": skipped,
            "model_loaded_mb": loaded, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def group_folder(folder: Path, count: int, images_from: Optional[Path]) -> Path:
    """A folder holding a group of ``count`` images: links to the first of ``images_from`` (sorted, any depth),
    repeated if there are fewer; synthetic images without ``images_from``."""
    from coseg.data import make_synthetic_coseg

    if images_from is None:
        root = make_synthetic_coseg(folder, num_groups=1, images_per_group=count, size=400, layout="folders")
        return next((root / "images").iterdir())
    files = sorted(images_from.rglob("*.jpg"))
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"{i:05d}.jpg").symlink_to(files[i % len(files)].resolve())
    return folder


def measure(folder: Path, stream_above: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", str(folder), "--stream-above", str(stream_above),
               "--members", str(args.members), "--image-size", str(args.image_size)]
    if args.checkpoint is not None:
        command += ["--checkpoint", str(args.checkpoint)]
    out = child_output(command, f"the measurement's process (stream_above {stream_above})")
    return json.loads(out.strip().splitlines()[-1])


def measured_row(count: int, folder: Path, modes: tuple[str, str], args: argparse.Namespace) -> dict:
    """Both modes of one group size, ``args.rounds`` times side by side (``modes`` says which goes first)."""
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}

    def side(mode: str) -> Callable[[], float]:
        def run() -> float:
            runs[mode].append(measure(folder, WHOLE if mode == "whole" else 0, args))
            return runs[mode][-1]["seconds"]
        return run

    seconds = dict(zip(modes, rounds_in_turn([side(mode) for mode in modes], args.rounds)))
    row: dict = {"images": count}
    for mode in ("whole", "chunks"):
        row[mode] = {key: statistics.median(r[key] for r in runs[mode])
                     for key in ("seconds", "peak_mb", "model_loaded_mb")}
        row[mode].update(results=runs[mode][0]["results"], skipped=runs[mode][0]["skipped"], runs=runs[mode])
    row.update(paired_ratios(seconds["chunks"], seconds["whole"], "time_ratio"))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[100, 200, 400], help="Group sizes to measure.")
    parser.add_argument("--checkpoint", type=Path, help="A trained model (default: the default architecture).")
    parser.add_argument("--members", type=int, default=3, help="Ensemble members of the default architecture.")
    parser.add_argument("--image-size", type=int, default=224,
                        help="Input size (pixels) of the default architecture (a --checkpoint brings its own).")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Rounds of whole and chunks side by side per size; medians over them (default 3).")
    parser.add_argument("--images-from", type=Path,
                        help="Folder whose .jpg images (any depth) make the group (default: iCoseg's images in "
                             "../shared/data, synthetic images when they are not there).")
    parser.add_argument("--out", type=Path, help="Write the measurements here (JSON).")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stream-above", type=int, default=WHOLE, help=argparse.SUPPRESS)
    args = parser.parse_args()
    at_least_one(parser, ("--images", args.images), ("--members", [args.members]),
                 ("--image-size", [args.image_size]), ("--rounds", [args.rounds]))
    if args.checkpoint is None:
        model_side(parser, "--image-size", args.image_size)
    if args.child is not None:
        print(json.dumps(child(args.child, args.stream_above, args.checkpoint, args.members, args.image_size)))
        return

    import torch

    from coseg.checkpoints import load_for_inference
    from coseg.models import CosegEnsemble

    images_from = args.images_from or (DEFAULT_IMAGES if DEFAULT_IMAGES.is_dir() else None)
    # what was given, checked before minutes of work
    if images_from is not None and not any(images_from.rglob("*.jpg")):
        fail(f"--images-from {images_from}: {'no .jpg images there' if images_from.is_dir() else 'folder not found'}")
    members, image_size = args.members, args.image_size  # what the measurements run: a --checkpoint brings its own
    if args.checkpoint is not None:
        with one_line():  # loaded as each measurement loads it: missing, not a model file, another kind of model
            model, image_size = load_for_inference(args.checkpoint, torch.device("cpu"))
        members = len(model.members) if isinstance(model, CosegEnsemble) else 1
        del model
    if args.out is not None:
        check_writable(args.out)
    source = "synthetic images" if images_from is None else f"the first images of {images_from}"
    model = "untrained default architecture" if args.checkpoint is None else args.checkpoint
    print(f"one flat group of {source}; {model}; medians of {args.rounds} round(s), MB = MiB")
    rows = []
    print(f"{'images':>6} {'read':>7} {'peak MB':>8} {'above model MB':>14} {'seconds':>8} {'chunks/whole time':>17}"
          "  per round")
    with tempfile.TemporaryDirectory() as scratch:
        for count in args.images:
            folder = group_folder(Path(scratch) / str(count), count, images_from)
            # the first mode alternates between sizes too
            row = measured_row(count, folder, ("whole", "chunks") if len(rows) % 2 == 0 else ("chunks", "whole"),
                               args)
            rows.append(row)
            for mode in ("whole", "chunks"):
                m = row[mode]
                ratio = f"{row['time_ratio']:.3f}" if mode == "chunks" else ""
                print(f"{count:>6} {mode:>7} {m['peak_mb']:>8.0f} {m['peak_mb'] - m['model_loaded_mb']:>14.0f} "
                      f"{m['seconds']:>8.1f} {ratio:>17}" + (f"  {row['time_ratio_pairs']}" if ratio else ""))
            for why in dict.fromkeys(row["whole"]["skipped"] + row["chunks"]["skipped"]):
                print(f"{'':>6} skipped (left out of the group): {why}")
    if args.out is not None:
        write_json(args.out, {"members": members, "image_size": image_size, "rounds": args.rounds,
                              "checkpoint": None if args.checkpoint is None else str(args.checkpoint), "rows": rows})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
