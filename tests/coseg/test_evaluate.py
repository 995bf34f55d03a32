import csv
import json
import math

import numpy as np
import pytest
import torch

from coseg.data import find_samples, read_mask
from coseg.evaluate import evaluate_samples, write_evaluation
from tests.coseg.files import write_cv2, write_exif_jpeg, write_rgb
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set

CPU = torch.device("cpu")


def test_scores_at_ground_truth_resolution(tmp_path):
    root = odd_sized_set(tmp_path / "data")
    scan = find_samples(root, "icoseg")
    ev = evaluate_samples(ConstantModel(0.9), scan.samples, 64, torch.device("cpu"), progress=False)
    # predicting all foreground: P = J = foreground share of each original-size mask
    per_group = {}
    for s in scan.samples:
        gt = read_mask(s.mask)
        per_group.setdefault(s.group, []).append(gt.mean())
    expected = np.mean([np.mean(v) for v in per_group.values()]) * 100
    assert ev.summary["J"] == pytest.approx(expected, rel=1e-6)
    assert ev.summary["P"] == pytest.approx(expected, rel=1e-6)
    assert ev.summary["images"] == 3 and ev.summary["per_group"]["g1"]["images"] == 1

    write_evaluation(ev, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["per_group"]) == {"g0", "g1"} and summary["J"] == pytest.approx(expected, abs=1e-3)
    rows = list(csv.DictReader(open(tmp_path / "out" / "per_image.csv")))
    assert len(rows) == 3 and {"group", "image", "P", "J", "empty_gt"} <= set(rows[0])


def test_unreadable_image_is_skipped_and_listed(tmp_path):
    root = odd_sized_set(tmp_path / "data")
    (root / "images" / "g0" / "im0.jpg").write_bytes(b"not a jpeg")
    scan = find_samples(root, "icoseg")
    ev = evaluate_samples(ConstantModel(0.1), scan.samples, 64, torch.device("cpu"), progress=False)
    assert ev.summary["images"] == 2 and len(ev.skipped) == 1
    assert "im0.jpg" in ev.skipped[0][1]
    assert ev.summary["J"] == 0.0  # predicting background everywhere
    assert math.isclose(ev.summary["skipped"], 1)


class BrightModel(torch.nn.Module):
    """Foreground probability = the image's first channel: white is foreground."""

    def predict_group(self, images: torch.Tensor, chunk_size: int = 16, refinement=None, flip: bool = False,
                      edges=None, statistics=None) -> torch.Tensor:
        return images[:, :1].clone()


def corner_image(height: int = 40, width: int = 56) -> np.ndarray:
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[: height // 2, : width // 2] = 255
    return rgb


def test_exif_rotated_image_is_scored_against_a_mask_of_the_stored_image(tmp_path):
    """Phones store photos sideways with an EXIF turn; a mask drawn on the stored pixels is scored (as training
    pairs it) with the prediction turned back, not skipped for its size."""
    root = tmp_path / "data"
    write_exif_jpeg(root / "images" / "g" / "phone.jpg", corner_image(), 6)
    write_cv2(root / "ground_truth" / "g" / "phone.png", corner_image()[..., 0])
    ev = evaluate_samples(BrightModel(), find_samples(root, "icoseg").samples, 64, CPU, progress=False,
                          predictions=tmp_path / "pred")
    assert not ev.skipped and ev.summary["J"] > 95
    saved = read_mask(ev.predicted[0][1])
    assert saved.shape == (40, 56) and (saved == (corner_image()[..., 0] > 0)).mean() > 0.97  # as stored


def test_images_sharing_a_stem_save_their_predictions_apart(tmp_path):
    root = tmp_path / "data"
    write_rgb(root / "images" / "g" / "a.jpg", corner_image())
    write_rgb(root / "images" / "g" / "A.png", 255 - corner_image())  # one file with a.png where case is ignored
    write_cv2(root / "ground_truth" / "g" / "a.png", corner_image()[..., 0])
    write_cv2(root / "ground_truth" / "g" / "A.png", 255 - corner_image()[..., 0])
    ev = evaluate_samples(BrightModel(), find_samples(root, "icoseg").samples, 64, CPU, progress=False,
                          predictions=tmp_path / "pred")
    saved = {sample.image.name: path for sample, path in ev.predicted}
    assert {name: path.name for name, path in saved.items()} == {"a.jpg": "a.jpg.png", "A.png": "A.png.png"}
    assert (read_mask(saved["a.jpg"]) != read_mask(saved["A.png"])).all()


def test_nothing_evaluated_says_why(tmp_path):
    root = tmp_path / "data"
    write_rgb(root / "images" / "g" / "a.jpg", corner_image())
    write_cv2(root / "ground_truth" / "g" / "a.png", corner_image(20, 40)[..., 0])  # another aspect ratio
    with pytest.raises(ValueError, match=r"1 skipped, the first .*a.png: mask is 20x40 \(HxW\) but its image "
                                         r".*a.jpg is 40x56"):
        evaluate_samples(BrightModel(), find_samples(root, "icoseg").samples, 64, CPU, progress=False)
    with pytest.raises(ValueError, match="none has a ground-truth mask"):
        evaluate_samples(BrightModel(), [], 64, CPU, progress=False)


@pytest.mark.parametrize("failing", [1, 2], ids=["first-write", "second-write"])
def test_an_interrupted_write_leaves_no_summary_beside_other_scores(tmp_path, monkeypatch, failing):
    """summary.json is written last, and an earlier one removed before the new per_image.csv replaces the old:
    a write that fails (as a run killed there) leaves the earlier pair whole, or per_image.csv without a summary,
    never a summary beside another evaluation's scores."""
    import os

    scan = find_samples(odd_sized_set(tmp_path / "data"), "icoseg")
    out = tmp_path / "out"
    files = ("summary.json", "per_image.csv")
    write_evaluation(evaluate_samples(ConstantModel(0.9), scan.samples, 64, CPU, progress=False), out)
    old = {name: (out / name).read_bytes() for name in files}
    second = evaluate_samples(ConstantModel(0.1), scan.samples, 64, CPU, progress=False)
    write_evaluation(second, tmp_path / "new")
    new = {name: (tmp_path / "new" / name).read_bytes() for name in files}
    assert old["summary.json"] != new["summary.json"] and old["per_image.csv"] != new["per_image.csv"]

    real_replace, renames = os.replace, []

    def replace(src, dst):
        renames.append(dst)
        if len(renames) == failing:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        write_evaluation(second, out)
    monkeypatch.undo()
    if (out / "summary.json").exists():
        assert {name: (out / name).read_bytes() for name in files} == old
    else:
        assert (out / "per_image.csv").read_bytes() in (old["per_image.csv"], new["per_image.csv"])
    assert failing == 1 or not (out / "summary.json").exists()  # the new scores are there, the summary not yet
    write_evaluation(second, out)
    assert {name: (out / name).read_bytes() for name in files} == new


def test_an_evaluation_removes_the_masks_an_earlier_one_saved(tmp_path):
    """The masks of an earlier `evaluate --report` (listed in its predictions/index.csv) are not this evaluation's:
    they went with the index, but stayed on disk (a user browsing predictions/ saw the old model's masks)."""
    scan = find_samples(odd_sized_set(tmp_path / "data"), "icoseg")
    out = tmp_path / "out"
    predictions = out / "predictions"

    def evaluate(samples, save: bool) -> None:
        write_evaluation(evaluate_samples(ConstantModel(0.9), samples, 64, CPU, progress=False,
                                          predictions=predictions if save else None), out)

    evaluate(scan.samples, save=True)
    groups = sorted({s.group for s in scan.samples})
    assert len(groups) >= 2 and {p.name for p in predictions.iterdir()} == {"index.csv", *groups}
    mine = predictions / "notes.txt"
    mine.write_text("kept")  # not an evaluation's file
    evaluate([s for s in scan.samples if s.group == groups[0]], save=True)
    assert {p.name for p in predictions.iterdir()} == {"index.csv", "notes.txt", groups[0]}
    evaluate(scan.samples, save=False)
    assert sorted(p.name for p in out.iterdir()) == ["per_image.csv", "predictions", "summary.json"]
    assert [p.name for p in predictions.iterdir()] == ["notes.txt"]
    mine.unlink()
    evaluate(scan.samples, save=True)
    evaluate(scan.samples, save=False)
    assert sorted(p.name for p in out.iterdir()) == ["per_image.csv", "summary.json"]
