"""``coseg demo``: the whole pipeline on a generated co-segmentation set, with no data set and no network."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coseg.atomic import write_text_atomic
from coseg.checkpoints import load_for_inference
from coseg.config import CosegTrainConfig
from coseg.data import find_samples, make_synthetic_coseg
from coseg.engine import resolve_device
from coseg.evaluate import evaluate_samples, write_evaluation
from coseg.predict import predict_folder
from coseg.report.files import PREDICTIONS
from coseg.selection import samples_of
from coseg.train import train

DEMO_GROUPS = 8
DEMO_TEST_GROUPS = 2
DEMO_IMAGES_PER_GROUP = 10
DEMO_IMAGE_SIZE = 128


def run_demo(output: Path, minutes: float = 3.0, device: str = "auto", quiet: bool = False) -> dict[str, Any]:
    """Generate 8 groups (the last 2 never seen in training), train for ``minutes`` from the ImageNet encoder,
    predict and evaluate the unseen groups (their predicted masks saved for a report: ``coseg report output``).
    Returns the summary and where everything went."""
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
                           groups_per_batch=2, images_per_group=4, device=device, quiet=quiet)
    result = train(cfg)
    dev = resolve_device(device)
    checkpoint = result.output / "best.safetensors"
    model, size = load_for_inference(checkpoint, dev)
    split = json.loads((data / "splits.json").read_text())
    test_groups = split["test"]
    scan = find_samples(data, "icoseg")
    evaluation = evaluate_samples(model, samples_of(scan, test_groups), size, dev, progress=not quiet,
                                  predictions=output / PREDICTIONS)
    evaluation.summary["checkpoint"] = str(checkpoint.resolve())
    write_evaluation(evaluation, output)
    masks = output / "masks"
    for group in test_groups:
        predict_folder(model, size, data / "images" / group, masks / group, dev, overlays=output / "overlays" / group,
                       overwrite=True, progress=not quiet)
    return {"summary": evaluation.summary, "masks": masks, "checkpoint": checkpoint, "train": result}
