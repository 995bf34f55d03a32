"""Evaluation of a data set where only some images of a group have ground truth: each such group is predicted with
all its images, as ``coseg predict`` predicts it, and only its labelled images are scored."""
import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from coseg.data import find_samples, read_mask
from coseg.evaluate import evaluate_samples, write_evaluation
from coseg.models import EdgeFilter, GroupColourCut, GroupStatistics
from coseg.predict import predict_folder
from coseg.report.files import PREDICTION_INDEX, PREDICTIONS
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.coseg.test_large_groups import group_model

CPU = torch.device("cpu")


class GroupRelativeModel(torch.nn.Module):
    """Foreground probability = 0.5 + the image's red - the group's mean red: a mask depends on its whole group."""

    def predict(self, images: torch.Tensor, flip: bool = False, edges=None) -> torch.Tensor:
        return self.predict_group(images, edges=edges)

    def predict_group(self, images: torch.Tensor, chunk_size: int = 16, refinement=None, flip: bool = False,
                      edges=None, statistics=None) -> torch.Tensor:
        probs = (0.5 + images[:, :1] - images[:, 0].mean()).clamp(0, 1)
        return probs if edges is None else edges(probs, images)


def network(shift: float) -> torch.nn.Module:
    """A small untrained network whose masks are neither empty nor full (its logits shifted by ``shift``)."""
    model = group_model()
    with torch.no_grad():
        model.mask_head.bias += shift
    return model


def partly_labelled(root: Path) -> Path:
    """iCoseg layout: group 0 with 2 of its 5 images labelled, group 1 fully labelled, group 2 without labels."""
    synthetic_set(root, groups=3, images=5)
    first, _, last = sorted((root / "ground_truth").iterdir())
    for mask in sorted(first.iterdir())[2:] + sorted(last.iterdir()):
        mask.unlink()
    return root


def written_by_predict(model, root: Path, out: Path, **options) -> dict[str, np.ndarray]:
    """Each mask ``coseg predict`` writes for ``root``'s images, by ``<group>/<image stem>``."""
    predict_folder(model, 64, root / "images", out, CPU, batch_size=2, progress=False, **options)
    return {f"{p.parent.name}/{p.stem}": read_mask(p) for p in out.rglob("*.png")}


@pytest.mark.parametrize("model, options", [
    (GroupRelativeModel(), {"edges": EdgeFilter(), "colour": GroupColourCut()}),
    (network(2.0), {"edges": EdgeFilter(), "colour": GroupColourCut()}),
    (network(0.0), {"statistics": GroupStatistics(1)}),
], ids=["group-relative", "network-default", "network-statistics"])
def test_scored_masks_are_those_predict_writes(tmp_path, model, options):
    root = partly_labelled(tmp_path / "data")
    scan = find_samples(root, "icoseg")
    ev = evaluate_samples(model, scan.samples, 64, CPU, batch_size=2, progress=False,
                          predictions=tmp_path / "eval" / PREDICTIONS, **options)
    expected = written_by_predict(model, root, tmp_path / "predicted", **options)
    labelled = [s for s in scan.samples if s.mask is not None]
    assert len(expected) == 15 and len(ev.predicted) == len(ev.scores) == len(labelled) == 7 and not ev.skipped
    for sample, saved in ev.predicted:
        assert np.array_equal(read_mask(saved), expected[f"{sample.group}/{sample.image.stem}"]), sample.image.name
    assert 0.05 < np.mean([m.mean() for m in expected.values()]) < 0.95  # masks that could differ
    # the predictions folder holds the scored masks only, each indexed once
    write_evaluation(ev, tmp_path / "eval")
    saved = sorted(p for p in (tmp_path / "eval" / PREDICTIONS).rglob("*.png"))
    assert saved == sorted(path for _, path in ev.predicted)
    rows = list(csv.DictReader(open(tmp_path / "eval" / PREDICTIONS / PREDICTION_INDEX, encoding="utf-8")))
    assert len(rows) == 7 and all(row["mask_path"] for row in rows)


def test_an_unlabelled_image_changes_its_groups_scores(tmp_path):
    """The stand-in for the failure this guards against: scoring a group from its labelled images alone gives
    another mask than predict's (here: the unlabelled images are bright, so the labelled ones are darker than
    their group's mean)."""
    root = partly_labelled(tmp_path / "data")
    samples = find_samples(root, "icoseg").samples
    whole = evaluate_samples(GroupRelativeModel(), samples, 64, CPU, progress=False, predictions=tmp_path / "a")
    alone = evaluate_samples(GroupRelativeModel(), [s for s in samples if s.mask is not None], 64, CPU,
                             progress=False, predictions=tmp_path / "b")
    differs = [not np.array_equal(read_mask(a), read_mask(b))
               for (sample, a), (_, b) in zip(whole.predicted, alone.predicted) if sample.group.startswith("00")]
    assert len(differs) == 2 and all(differs)


def test_an_unreadable_unlabelled_image_is_listed_and_left_out_of_its_group(tmp_path):
    root = partly_labelled(tmp_path / "data")
    broken = sorted((root / "images").glob("00*/*.jpg"))[3]
    broken.write_bytes(b"not an image")
    ev = evaluate_samples(GroupRelativeModel(), find_samples(root, "icoseg").samples, 64, CPU, progress=False,
                          predictions=tmp_path / "eval")
    assert ev.summary["images"] == 7 and ev.summary["skipped"] == 1
    (file, reason), = ev.skipped
    assert file == str(broken) and str(broken) in reason and "without ground truth" in reason
    expected = written_by_predict(GroupRelativeModel(), root, tmp_path / "predicted")
    for sample, saved in ev.predicted:  # predict left it out of the group too
        assert np.array_equal(read_mask(saved), expected[f"{sample.group}/{sample.image.stem}"])


@pytest.mark.parametrize("group_mode", [True, False], ids=["groups", "alone"])
def test_images_nothing_is_scored_with_are_not_read(tmp_path, monkeypatch, group_mode):
    """A group without ground truth is not predicted; in single-image mode, neither is an unlabelled image."""
    import coseg.evaluate

    root = partly_labelled(tmp_path / "data")
    read = []
    images_for = coseg.evaluate.images_for
    monkeypatch.setattr(coseg.evaluate, "images_for", lambda paths, *a: read.extend(paths) or images_for(paths, *a))
    ev = evaluate_samples(GroupRelativeModel(), find_samples(root, "icoseg").samples, 64, CPU, progress=False,
                          group_mode=group_mode)
    assert ev.summary["images"] == 7 and not ev.skipped
    groups = sorted({path.parent.name for path in read})
    assert len(read) == (10 if group_mode else 7) and groups == ["00-star", "01-ellipse"]


def test_coseg_evaluate_scores_the_masks_coseg_predict_writes(tmp_path):
    """Through the CLI: `coseg evaluate --report` saves, for each labelled image, the mask `coseg predict` writes
    for it, though only 2 of its group's 5 images are labelled (the CLI passed labelled images only)."""
    from apps.cli import main
    from click.testing import CliRunner

    data = partly_labelled(tmp_path / "data")
    model = tmp_path / "model.safetensors"
    network(2.0).save(model, metadata={"image_size": "64"})
    common = ["--checkpoint", model, "--device", "cpu", "--quiet"]
    for args in (["evaluate", "--data", data, "--output", tmp_path / "ev", "--report"],
                 ["predict", "--input", data / "images", "--output", tmp_path / "pred"]):
        result = CliRunner().invoke(main, [str(a) for a in [*args, *common]], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "ev" / PREDICTIONS / PREDICTION_INDEX, encoding="utf-8")))
    assert len(rows) == 7
    for row in rows:
        saved = read_mask(tmp_path / "ev" / PREDICTIONS / row["prediction"])
        written = read_mask((tmp_path / "pred" / row["group"] / row["image"]).with_suffix(".png"))
        assert np.array_equal(saved, written), row["image"]
