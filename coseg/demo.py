"""``coseg demo``: the whole pipeline on a generated co-segmentation set, with no data set and no network."""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from coseg.atomic import remove_temporaries, write_text_atomic
from coseg.checkpoints import load_for_inference
from coseg.config import CosegTrainConfig
from coseg.data import find_samples, make_synthetic_coseg
from coseg.engine import resolve_device
from coseg.evaluate import evaluate_samples, remove_earlier_predictions, write_evaluation
from coseg.models import EdgeFilter, GroupColourCut
from coseg.predict import OVERLAYS_RECORD, empty_masks_warning, output_path, predict_folder
from coseg.report.build import remove_report
from coseg.report.files import PREDICT_RECORD, PREDICTIONS, record_path
from coseg.selection import samples_of
from coseg.train import train

# Many small groups: with 6 training groups of 10 images the model memorised their objects and its validation J fell
# to ~0 after epoch 3 (J 42 on 4 unseen groups); 20 groups of 5 teach it what a group has in common (J 55, and a
# validation J that holds at 50-60).
DEMO_GROUPS = 24
DEMO_TEST_GROUPS = 4
DEMO_IMAGES_PER_GROUP = 5
DEMO_IMAGE_SIZE = 128


def run_demo(output: Path, minutes: float = 3.0, device: str = "auto", quiet: bool = False) -> dict[str, Any]:
    """Generate 24 groups of 5 images (the last 4 never seen in training), train for ``minutes`` from the ImageNet
    encoder, predict and evaluate the unseen groups (their predicted masks saved for a report: ``coseg report output``).
    An earlier demo's scores, report, masks and overlays in ``output`` are removed before training
    (:func:`remove_earlier_masks`: only the files it wrote). When the unseen groups' masks are all empty (or a
    group's are: a model trained too short), a warning says so on stderr. Returns the summary and where everything
    went."""
    output = Path(output)
    data = output / "data"
    if not (data / "splits.json").is_file():
        make_synthetic_coseg(data, num_groups=DEMO_GROUPS, images_per_group=DEMO_IMAGES_PER_GROUP,
                             size=DEMO_IMAGE_SIZE, seed=0)
        groups = sorted(p.name for p in (data / "images").iterdir())
        write_text_atomic(data / "splits.json", json.dumps(
            {"train": groups[:-DEMO_TEST_GROUPS], "test": groups[-DEMO_TEST_GROUPS:]}, indent=1))
    cfg = CosegTrainConfig(data=str(data), layout="icoseg", output=str(output / "run"), train_split="train",
                           image_size=DEMO_IMAGE_SIZE, epochs=1000, minutes=minutes, val_fraction=0.2,
                           groups_per_batch=2, images_per_group=4, device=device, quiet=quiet,
                           overwrite=True)  # a second demo replaces the first
    test_groups = json.loads((data / "splits.json").read_text())["test"]
    # the first demo's scores, report, masks and overlays describe the checkpoint the training replaces: gone even if
    # it is interrupted; the report first, which a `coseg report` writing it refuses
    remove_report(output)
    for name in ("summary.json", "per_image.csv"):
        (output / name).unlink(missing_ok=True)
    remove_earlier_predictions(output / PREDICTIONS)
    remove_earlier_masks(output, data / "images", test_groups)
    result = train(cfg)
    dev = resolve_device(device)
    checkpoint = result.output / "best.safetensors"
    model, size = load_for_inference(checkpoint, dev)
    scan = find_samples(data, "icoseg")
    edges, colour = EdgeFilter(), GroupColourCut()  # as coseg evaluate / predict by default
    evaluation = evaluate_samples(model, samples_of(scan, test_groups, labelled=False), size, dev,
                                  progress=not quiet, predictions=output / PREDICTIONS, edges=edges, colour=colour)
    record_path(evaluation.summary, "checkpoint", checkpoint, output)
    write_evaluation(evaluation, output)
    masks = output / "masks"
    predicted: Counter[str] = Counter()  # unseen group → masks predicted
    empty: Counter[str] = Counter()  # unseen group → how many of them are empty
    for group in test_groups:
        report = predict_folder(model, size, data / "images" / group, masks / group, dev,
                                overlays=output / "overlays" / group, overwrite=True, progress=not quiet, edges=edges,
                                colour=colour, warn_empty=False)
        predicted[group], empty[group] = report.predicted.total(), report.empty.total()
    warning = empty_masks_warning(predicted, empty, f"the model, trained for {minutes:g} minute(s), is likely "
                                  "under-trained (J 0 there): give the demo more --minutes (3 by default)",
                                  objects_shared=True)
    if warning is not None:
        print(warning, file=sys.stderr)
    return {"summary": evaluation.summary, "masks": masks, "checkpoint": checkpoint, "train": result}


def remove_earlier_masks(output: Path, images: Path, groups: Sequence[str]) -> None:
    """Remove what an earlier demo's predictions wrote in ``output/masks/<group>/`` and ``output/overlays/<group>/``
    for each of the unseen ``groups`` (their images in ``images/<group>/``): the PNG of each image, predict's record
    and the temporary files of a killed write; folders left empty go too. Other files there are left as they are."""
    for folder, record in (("masks", PREDICT_RECORD), ("overlays", OVERLAYS_RECORD)):
        for group in groups:
            written = output / folder / group
            if Path(group).name != group or group == ".." or not written.is_dir() or not (images / group).is_dir():
                continue  # a group name the demo never writes (a path) or nothing to remove
            for path in [written / record, *(output_path(written, Path(image.name)) for image in
                                             (images / group).iterdir())]:
                if path.is_file():
                    path.unlink()
            remove_temporaries(written)
            if not any(written.iterdir()):
                written.rmdir()
        if (output / folder).is_dir() and not any((output / folder).iterdir()):
            (output / folder).rmdir()
