"""A ground-truth mask saved at another resolution than its image (same aspect ratio, within 1 % or a pixel's
rounding) is scored with the prediction resized to it; a mask of another aspect ratio is skipped, named and counted."""
import numpy as np
import pytest
import torch

from coseg.data import find_samples, read_image, read_mask
from coseg.data.io import MaskError, fit_to_mask, read_pair, same_aspect
from coseg.evaluate import evaluate_samples, write_evaluation
from coseg.report.build import build_report
from coseg.report.files import PREDICTIONS
from coseg.scores import score_image
from tests.coseg.files import write_cv2, write_exif_jpeg, write_rgb
from tests.coseg.test_evaluate import BrightModel
from tests.report.report_runs import parse_page

CPU = torch.device("cpu")


def naive_halve(mask: np.ndarray) -> np.ndarray:
    """(2h, 2w) bool → (h, w): foreground where at least two of the four pixels of the 2 × 2 block are."""
    out = np.zeros((mask.shape[0] // 2, mask.shape[1] // 2), bool)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = mask[2 * i:2 * i + 2, 2 * j:2 * j + 2].sum() >= 2
    return out


def blob(height: int, width: int) -> np.ndarray:
    """(H, W) bool: a rectangle off the centre, no turn or flip leaves it in place."""
    mask = np.zeros((height, width), bool)
    mask[height // 8:height // 2 + 1, width // 5:width * 3 // 4] = True
    return mask


@pytest.mark.parametrize("a, b, same", [
    ((40, 56), (20, 28), True), ((333, 500), (167, 250), True), ((333, 500), (166, 250), True),
    ((100, 100), (100, 101), True), ((1000, 1000), (1000, 1009), True),
    ((40, 56), (20, 40), False), ((100, 100), (100, 102), False), ((1000, 1000), (1000, 1011), False),
    ((40, 56), (56, 40), False)])
def test_same_aspect(a, b, same):
    assert same_aspect(a, b) is same and same_aspect(b, a) is same


def test_prediction_is_resized_to_a_half_size_mask(tmp_path):
    image = write_rgb(tmp_path / "img.png", np.zeros((24, 32, 3), np.uint8))
    prediction = np.random.default_rng(0).random((24, 32)) < 0.5
    fitted = fit_to_mask(prediction, image, tmp_path / "m.png", (12, 16))
    np.testing.assert_array_equal(fitted, naive_halve(prediction))


def test_prediction_is_resized_to_a_double_size_mask(tmp_path):
    image = write_rgb(tmp_path / "img.png", np.zeros((24, 32, 3), np.uint8))
    prediction = np.random.default_rng(0).random((24, 32)) < 0.5
    fitted = fit_to_mask(prediction, image, tmp_path / "m.png", (48, 64))
    expected = np.zeros((48, 64), bool)
    for i in range(48):
        for j in range(64):
            expected[i, j] = prediction[i // 2, j // 2]
    np.testing.assert_array_equal(fitted, expected)


@pytest.mark.parametrize("orientation", [6, 8])
def test_prediction_on_a_rotated_image_is_turned_back_and_resized_to_a_smaller_stored_mask(tmp_path, orientation):
    stored = blob(24, 32)
    image = write_exif_jpeg(tmp_path / "img.jpg", np.repeat(stored[..., None] * np.uint8(255), 3, axis=2), orientation)
    prediction = np.rot90(stored, 1 if orientation == 8 else -1)  # as the model sees the image: rotated
    fitted = fit_to_mask(np.ascontiguousarray(prediction), image, tmp_path / "m.png", (12, 16))
    np.testing.assert_array_equal(fitted, naive_halve(stored))


def test_mask_of_another_aspect_ratio_names_both_files(tmp_path):
    image = write_rgb(tmp_path / "img.png", np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(MaskError, match=r"m.png: mask is 12x20 \(HxW\) but its image .*img.png is 24x32"):
        fit_to_mask(blob(24, 32), image, tmp_path / "m.png", (12, 20))


def test_evaluate_scores_a_mask_at_another_resolution_and_skips_one_of_another_aspect(tmp_path):
    root = tmp_path / "data"
    truth = blob(40, 56)
    white = np.repeat(truth[..., None] * np.uint8(255), 3, axis=2)
    for name in ("half", "same", "other"):
        write_rgb(root / "images" / "g" / f"{name}.png", white)
    write_cv2(root / "ground_truth" / "g" / "half.png", naive_halve(truth) * np.uint8(255))
    write_cv2(root / "ground_truth" / "g" / "same.png", truth * np.uint8(255))
    write_cv2(root / "ground_truth" / "g" / "other.png", np.zeros((20, 40), np.uint8))
    ev = evaluate_samples(BrightModel(), find_samples(root, "icoseg").samples, 64, CPU, progress=False,
                          predictions=tmp_path / "pred")
    assert sorted(s.name for s in ev.scores) == ["half.png", "same.png"]
    assert ev.summary["resized"] == 1 and ev.summary["skipped"] == 1
    [(file, reason)] = ev.skipped
    assert file.endswith("other.png") and "other.png: mask is 20x40 (HxW) but its image" in reason
    half = next(s for s in ev.scores if s.name == "half.png")
    saved = {sample.image.name: path for sample, path in ev.predicted}
    prediction = read_mask(saved["half.png"])
    assert prediction.shape == (20, 28)  # saved at the ground truth's size
    assert (prediction == naive_halve(truth)).mean() > 0.97
    expected = score_image(prediction, naive_halve(truth))
    assert half.J == expected.J > 0.9 and half.P == expected.P


def test_read_pair_resizes_the_image_to_a_mask_of_its_aspect_ratio_only_when_asked(tmp_path):
    colours = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    image = write_rgb(tmp_path / "img.png", colours)
    mask = write_cv2(tmp_path / "m.png", naive_halve(blob(24, 32)) * np.uint8(255))
    with pytest.raises(MaskError, match="mask is 12x16"):
        read_pair(image, mask)
    shown, truth = read_pair(image, mask, resize_image=True)
    expected = colours.reshape(12, 2, 16, 2, 3).astype(float).mean(axis=(1, 3))  # each 2 × 2 block's mean
    assert shown.shape == (12, 16, 3) and np.abs(shown - expected).max() <= 0.5
    np.testing.assert_array_equal(truth, naive_halve(blob(24, 32)))
    other = write_cv2(tmp_path / "o.png", np.zeros((12, 20), np.uint8))
    with pytest.raises(MaskError, match="mask is 12x20"):
        read_pair(image, other, resize_image=True)


def test_the_report_shows_an_image_scored_on_a_mask_at_another_resolution(tmp_path):
    root = tmp_path / "data"
    truth = blob(40, 56)
    write_rgb(root / "images" / "g" / "half.png", np.repeat(truth[..., None] * np.uint8(255), 3, axis=2))
    write_cv2(root / "ground_truth" / "g" / "half.png", naive_halve(truth) * np.uint8(255))
    out = tmp_path / "eval"
    write_evaluation(evaluate_samples(BrightModel(), find_samples(root, "icoseg").samples, 64, CPU, progress=False,
                                      predictions=out / PREDICTIONS), out)
    result = build_report(out, progress=False)
    page = result.path.read_text(encoding="utf-8")
    assert not result.problems and "not shown" not in page
    thumbnails = [read_image(out / src) for src in parse_page(result.path).images]  # image | truth | prediction
    assert len(thumbnails) == 3 and all(t.shape[:2] == (20, 28) for t in thumbnails)


def test_coseg_evaluate_says_how_many_masks_it_scored_at_their_own_resolution(tmp_path):
    from click.testing import CliRunner

    from apps.cli import main
    from tests.coseg.test_evaluate_partial import network

    root = tmp_path / "data"
    truth = blob(40, 56)
    for name, mask in (("half", naive_halve(truth)), ("same", truth)):
        write_rgb(root / "images" / "g" / f"{name}.png", np.repeat(truth[..., None] * np.uint8(255), 3, axis=2))
        write_cv2(root / "ground_truth" / "g" / f"{name}.png", mask * np.uint8(255))
    model = tmp_path / "model.safetensors"
    network(2.0).save(model, metadata={"image_size": "64"})
    result = CliRunner().invoke(main, [str(a) for a in ["evaluate", "--checkpoint", model, "--data", root, "--device",
                                                         "cpu", "--quiet", "--output", tmp_path / "ev"]])
    assert result.exit_code == 0, result.output
    assert "note: 1 ground-truth mask(s) saved at another resolution than their image: scored at theirs, the " \
           "predictions resized to them" in result.output


def test_training_uses_a_mask_at_another_resolution_as_evaluate_scores_it(tmp_path):
    from coseg.data import Sample
    from coseg.data.cache import decode_sample, resize_image, resize_mask

    colours = np.random.default_rng(2).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    image = write_rgb(tmp_path / "img.png", colours)
    truth = naive_halve(blob(40, 56))
    mask = write_cv2(tmp_path / "m.png", truth * np.uint8(255))
    decoded = decode_sample(Sample(image, mask, "g"), 32)
    shown, _ = read_pair(image, mask, resize_image=True)
    assert decoded.size == (20, 28)  # where evaluate scores it
    np.testing.assert_array_equal(decoded.mask, resize_mask(truth, 32))
    np.testing.assert_array_equal(decoded.image, resize_image(shown, 32))
    other = write_cv2(tmp_path / "o.png", np.zeros((20, 40), np.uint8))
    with pytest.raises(MaskError, match="mask is 20x40"):
        decode_sample(Sample(image, other, "g"), 32)
