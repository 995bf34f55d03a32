"""Audit (s13) of the evaluation area: a streamed group's image that becomes unreadable before the float32 re-read
(CUDA, after a float16 overflow) is skipped and reported like any unreadable file, the run goes on; an evaluation
refused for its batch or image size leaves an earlier evaluation's saved masks as they were; saved predictions are
never written over the ground truth or among the images (``evaluate --masks out/predictions --output out --report``
wrote its predictions over the masks it scored against); evaluation against a looped reference on awkward masks."""
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import coseg.inference
from coseg.data import find_samples, read_image, read_mask, resize_image
from coseg.evaluate import evaluate_samples, write_evaluation
from coseg.inference import images_for, predict_dataset
from coseg.report.files import PREDICTION_INDEX
from apps.cli import main
from coseg.models import create_model
from tests.coseg.files import write_cv2
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set
from tests.coseg.test_inference_non_finite import overflowing_under_autocast
from tests.coseg.test_large_groups import group_model, write_group

CPU = torch.device("cpu")


def test_a_file_unreadable_when_the_float32_context_is_taken_is_skipped_and_the_group_goes_on(tmp_path, monkeypatch):
    """Image 0 is read for the group's context, then for its chunk, then becomes unreadable before the float32
    context is read: it is reported (naming its file), and the others are predicted in the context of the rest."""
    paths = write_group(tmp_path / "g", 5)
    model = group_model()
    expected = dict(predict_dataset(model, images_for(paths[1:], 64, None), CPU, batch_size=2, groups=[0] * 4))
    monkeypatch.setattr(coseg.inference, "mixed_precision", lambda device: True)  # as on CUDA
    overflowing_under_autocast(model, monkeypatch)
    dataset = images_for(paths, 64, None)
    read, reads = dataset.__getitem__, []

    def changing(i: int) -> dict:
        reads.append(i)
        if i == 0 and reads.count(0) == 3:
            paths[0].write_bytes(b"not an image any more")
        return read(i)

    monkeypatch.setattr(dataset, "__getitem__", changing)
    got = dict(predict_dataset(model, dataset, CPU, batch_size=2, groups=[0] * 5, stream_above=2))
    assert sorted(got) == list(range(5))
    report = got.pop(0)
    assert isinstance(report, str) and report.startswith(str(paths[0]))
    assert report.endswith("(read before: the file changed while its group was predicted)")
    for i, probs in got.items():
        assert isinstance(probs, torch.Tensor), probs
        torch.testing.assert_close(probs, expected[i - 1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("options, words", [({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
                                            ({"image_size": 0}, "image_size must be an integer >= 1, got 0")])
def test_a_refused_evaluation_keeps_the_earlier_saved_masks(tmp_path, options, words):
    samples = find_samples(odd_sized_set(tmp_path / "data"), "icoseg").samples
    predictions = tmp_path / "out" / "predictions"
    write_evaluation(evaluate_samples(ConstantModel(0.9), samples, 64, CPU, progress=False, predictions=predictions),
                     tmp_path / "out")
    assert (predictions / PREDICTION_INDEX).is_file()
    before = {p: p.read_bytes() for p in predictions.rglob("*") if p.is_file()}
    arguments = {"image_size": 64, **options}
    with pytest.raises(ValueError, match=words):
        evaluate_samples(ConstantModel(0.1), samples, arguments.pop("image_size"), CPU, progress=False,
                         predictions=predictions, **arguments)
    assert {p: p.read_bytes() for p in predictions.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("folder", ["ground_truth", "images"])
def test_predictions_into_the_data_sets_folders_are_refused_before_a_mask_is_overwritten(tmp_path, folder):
    root = odd_sized_set(tmp_path / "data")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    with pytest.raises(ValueError, match=r"im0\.png, the saved prediction of .*im0\.jpg, would be written among the "
                                         r"data set's images or masks"):
        evaluate_samples(ConstantModel(0.9), find_samples(root, "icoseg").samples, 64, CPU, progress=False,
                         predictions=root / folder)
    assert sorted(p for p in root.rglob("*") if p.is_file()) == files
    assert {p: p.read_bytes() for p in files} == before
    assert read_mask(root / "ground_truth" / "g0" / "im0.png").mean() < 0.5


def test_evaluate_report_into_the_folder_holding_the_masks_is_refused_and_the_masks_kept(tmp_path):
    root = odd_sized_set(tmp_path / "data")
    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=4).save(model, {"image_size": "64"})
    masks = tmp_path / "out" / "predictions"  # --masks DIR kept where --report saves its predictions
    masks.parent.mkdir()
    shutil.move(root / "ground_truth", masks)
    before = {p: p.read_bytes() for p in masks.rglob("*.png")}
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(model), "--data", str(root), "--masks",
                                       str(masks), "--output", str(tmp_path / "out"), "--report", "--quiet"])
    assert result.exit_code == 1 and "would be written among the data set's images or masks" in result.output
    assert {p: p.read_bytes() for p in masks.rglob("*.png")} == before
    assert not (tmp_path / "out" / "summary.json").exists()


class RedModel(torch.nn.Module):
    """Foreground probability = the image's red channel."""

    def predict_group(self, images: torch.Tensor, chunk_size: int = 16, refinement=None, flip: bool = False,
                      edges=None, statistics=None) -> torch.Tensor:
        return images[:, :1].clone()

    def predict(self, images: torch.Tensor, flip: bool = False, edges=None) -> torch.Tensor:
        return images[:, :1].clone()


def looped_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """P and J of one image by a loop over its pixels; J is NaN for an empty ground truth."""
    same = inter = union = 0
    for y in range(gt.shape[0]):
        for x in range(gt.shape[1]):
            same += pred[y, x] == gt[y, x]
            inter += pred[y, x] and gt[y, x]
            union += pred[y, x] or gt[y, x]
    return same / gt.size, inter / union if gt.any() else math.nan


@pytest.mark.parametrize("group_mode", [True, False], ids=["groups", "alone"])
def test_evaluation_matches_a_looped_reference_on_awkward_masks(tmp_path, group_mode):
    """Odd sizes, 0/1 and 0/255 masks, an empty ground truth, ground truth and prediction both empty, a group of one
    named like a path: P per image, per group, then over groups; J likewise without the empty ground truths
    ("exclude") or with them as 0 ("zero"), each at the ground truth's resolution."""
    rng = np.random.default_rng(0)
    kinds = {"a": ["random", "empty"], "b/c": ["full"], "d": ["both empty", "random"]}
    for group, items in kinds.items():
        for i, kind in enumerate(items):
            h, w = rng.integers(3, 14, size=2)
            image = np.zeros((h, w, 3), np.uint8)
            image[..., 2] = (rng.random((h, w)) > 0.5) * 255  # BGR: the red channel
            gt = (rng.random((h, w)) > 0.4).astype(np.uint8) * (1 if i else 255)
            if kind == "full":
                gt[:] = 255
            elif kind != "random":
                gt[:] = 0
            if kind == "both empty":
                image[:] = 0
            write_cv2(tmp_path / "data" / "images" / group / f"i{i}.png", image)
            write_cv2(tmp_path / "data" / "ground_truth" / group / f"i{i}.png", gt)
    samples = find_samples(tmp_path / "data", "icoseg").samples
    ev = evaluate_samples(RedModel(), samples, 8, CPU, progress=False, group_mode=group_mode)
    per_group: dict[str, list[tuple[float, float]]] = {}
    for sample in samples:
        red = torch.from_numpy(resize_image(read_image(sample.image), 8)[..., 0].astype(np.float32) / 255)
        gt = read_mask(sample.mask)
        pred = F.interpolate(red[None, None], size=gt.shape, mode="bilinear", align_corners=False)[0, 0] >= 0.5
        per_group.setdefault(sample.group, []).append(looped_scores(pred.numpy(), gt))
    assert [(s.group, s.P) for s in ev.scores] == [(g, pytest.approx(p)) for g, v in per_group.items() for p, _ in v]
    j_exclude = [np.mean([j for _, j in v if not math.isnan(j)]) for v in per_group.values()
                 if any(not math.isnan(j) for _, j in v)]
    j_zero = [np.mean([0 if math.isnan(j) else j for _, j in v]) for v in per_group.values()]
    assert ev.summary["P"] == pytest.approx(100 * np.mean([np.mean([p for p, _ in v]) for v in per_group.values()]))
    assert ev.summary["J"] == pytest.approx(100 * np.mean(j_exclude))
    assert ev.summary["J_empty_zero"] == pytest.approx(100 * np.mean(j_zero))
    assert ev.summary["images"] == 5 and ev.summary["empty_gt_images"] == 2 and ev.summary["resized"] == 0
