"""Non-finite (NaN/inf) foreground probabilities: on CUDA a float16 result that is not finite is predicted again in
float32 (``run_model``); probabilities still not finite are reported, naming the file, as an unreadable image is,
and evaluate and predict skip and list those images."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from coseg.data import CosegDataset, find_samples, read_image
from coseg.evaluate import evaluate_samples
from coseg.inference import NON_FINITE, images_for, predict_dataset, run_model
from coseg.models import GroupColourCut
from coseg.predict import predict_folder
from tests.coseg.pipeline_fixtures import odd_sized_set
from tests.coseg.test_large_groups import group_model, write_group

CPU = torch.device("cpu")


class NaNForBlack(torch.nn.Module):
    """Foreground probability = the image's red channel, NaN all over an all-black image; each image predicted on
    its own, in every way ``predict_dataset`` calls a model (whole groups, and a large group's context and chunks)."""

    def predict(self, images: torch.Tensor, flip: bool = False, edges=None) -> torch.Tensor:
        probs = images[:, :1].clone()
        probs[images.flatten(1).amax(1) == 0] = float("nan")
        return probs

    def predict_group(self, images: torch.Tensor, chunk_size: int = 16, refinement=None, flip: bool = False,
                      edges=None, statistics=None) -> torch.Tensor:
        return self.predict(images)

    def group_context(self, chunks, flip: bool = False) -> None:
        for _ in chunks:
            pass

    def predict_chunk(self, chunk: torch.Tensor, context, rows, flip: bool = False, edges=None) -> torch.Tensor:
        return self.predict(chunk)


def black_image(path: Path) -> Path:
    """Overwrite the image at ``path`` with an all-black one of the same size (the same format)."""
    cv2.imwrite(str(path), np.zeros_like(cv2.imread(str(path))))
    return path


def overflowing_under_autocast(model: torch.nn.Module, monkeypatch) -> None:
    """Make ``model``'s probabilities NaN wherever it runs under autocast, as after a float16 overflow."""
    for name in ("predict", "predict_group", "predict_chunk"):
        method = getattr(model, name)

        def overflowing(*args, method=method, **kwargs):
            probs = method(*args, **kwargs)
            return torch.full_like(probs, np.nan) if torch.is_autocast_enabled("cpu") else probs

        monkeypatch.setattr(model, name, overflowing)


@pytest.fixture
def half_precision_on_cpu(monkeypatch):
    """Run the model as on CUDA: under autocast (bfloat16 on the CPU) first."""
    import coseg.inference

    monkeypatch.setattr(coseg.inference, "mixed_precision", lambda device: True)


def test_a_non_finite_half_precision_result_is_computed_again_in_float32(half_precision_on_cpu):
    calls = []

    def call(half: bool) -> torch.Tensor:
        calls.append((half, torch.is_autocast_enabled("cpu")))
        return torch.tensor([float("nan") if half else 0.25, 0.5])

    assert run_model(call, CPU).tolist() == [0.25, 0.5]
    assert calls == [(True, True), (False, False)]  # the second call outside autocast
    calls.clear()
    assert run_model(lambda half: calls.append(half) or (torch.ones(2), [torch.zeros(1)]), CPU)[0].tolist() == [1, 1]
    assert calls == [True]  # a finite result is kept
    calls.clear()
    nested = run_model(lambda half: calls.append(half) or (torch.ones(2), [torch.tensor([float("inf")])]), CPU)
    assert calls == [True, False] and torch.isinf(nested[1][0]).all()  # still not finite: returned as it is


def test_without_mixed_precision_the_model_runs_once_in_float32():
    calls = []
    result = run_model(lambda half: calls.append((half, torch.is_autocast_enabled("cpu"))) or torch.tensor([np.nan]),
                       CPU)
    assert calls == [(False, False)] and torch.isnan(result).all()  # nothing more to try


@pytest.mark.parametrize("mode", ["alone", "groups", "streamed"])
def test_a_batch_overflowing_in_half_precision_is_predicted_in_float32(tmp_path, monkeypatch, mode):
    """A real network whose probabilities are NaN under autocast (as after a float16 overflow): every image gets
    the float32 prediction (a streamed group's chunks in a float32 context), none is reported."""
    import coseg.inference

    paths = write_group(tmp_path / "g", 5)
    model = group_model()
    groups = None if mode == "alone" else [0] * 5
    expected = dict(predict_dataset(model, images_for(paths, 64, None), CPU, batch_size=2, groups=groups))
    monkeypatch.setattr(coseg.inference, "mixed_precision", lambda device: True)
    overflowing_under_autocast(model, monkeypatch)
    got = dict(predict_dataset(model, images_for(paths, 64, None), CPU, batch_size=2, groups=groups,
                               stream_above=2 if mode == "streamed" else 100))
    assert sorted(got) == list(range(5))
    for i, probs in got.items():
        assert isinstance(probs, torch.Tensor), probs
        torch.testing.assert_close(probs, expected[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("colour", [None, GroupColourCut(iterations=1)], ids=["no-cut", "colour-cut"])
@pytest.mark.parametrize("mode", ["alone", "groups", "streamed"])
@pytest.mark.parametrize("original_size", [False, True], ids=["model-size", "original-size"])
def test_an_image_with_non_finite_probabilities_is_reported_and_the_others_predicted(tmp_path, mode, colour,
                                                                                    original_size):
    paths = write_group(tmp_path / "g", 5)
    black_image(paths[3])
    dataset = images_for(paths, 64, colour)
    got = dict(predict_dataset(NaNForBlack(), dataset, CPU, batch_size=2, original_size=original_size,
                               groups=None if mode == "alone" else [0] * 5, colour=colour,
                               stream_above=2 if mode == "streamed" else 100))
    assert sorted(got) == list(range(5))
    report = got.pop(3)
    assert report == f"{paths[3]}: {NON_FINITE}"
    # the others as the model and the cut make them without the black image (left out of the group's cut)
    others = [0, 1, 2, 4]
    images = torch.stack([dataset[i]["image"] for i in others])
    probs = images[:, :1].float() / 255
    if colour is not None:
        cut_images = torch.stack([dataset[i]["cut_image"] for i in others])
        probs = (colour(cut_images, probs) if mode != "alone" else
                 torch.cat([colour(cut_images[k:k + 1], probs[k:k + 1]) for k in range(len(others))]))
    for k, i in enumerate(others):
        result = got[i]
        if original_size:
            size = read_image(paths[i]).shape[:2]
            assert result.shape == size and result.dtype == bool
            expected = cv2.resize(probs[k, 0].numpy(), size[::-1], interpolation=cv2.INTER_LINEAR) >= 0.5
            assert (result == expected).mean() > 0.999
        else:
            assert torch.equal(result, probs[k, 0])


def test_a_cosegdataset_item_is_reported_by_its_image_file(tmp_path):
    root = odd_sized_set(tmp_path / "data")
    black = black_image(root / "images" / "g0" / "im1.jpg")
    dataset = CosegDataset(find_samples(root, "icoseg").samples, 64)
    got = dict(predict_dataset(NaNForBlack(), dataset, CPU, groups=dataset.group_ids.tolist()))
    bad = [s.image for s in dataset.samples].index(black)
    assert got.pop(bad) == f"{black}: {NON_FINITE}"
    assert all(isinstance(probs, torch.Tensor) and torch.isfinite(probs).all() for probs in got.values())


def test_validation_scores_an_image_with_non_finite_probabilities_as_an_empty_mask(tmp_path):
    from coseg.train import validation_scores

    root = odd_sized_set(tmp_path / "data")
    black = black_image(root / "images" / "g0" / "im1.jpg")
    dataset = CosegDataset(find_samples(root, "icoseg").samples, 64)
    scores = validation_scores(NaNForBlack(), dataset, CPU)  # the broken image counts, as a miss
    others = CosegDataset([s for s in dataset.samples if s.image != black], 64)
    expected = {"g0": [], "g1": []}
    for sample in dataset.samples:
        gt = dataset.cache[sample].mask.astype(bool)
        red = dataset.cache[sample].image[..., 0] / 255 >= 0.5
        mask = np.zeros_like(gt) if sample.image == black else red
        expected[sample.group].append(100 * ((mask & gt).sum() / max((mask | gt).sum(), 1)))
    assert scores["J"] == pytest.approx(np.mean([np.mean(j) for j in expected.values()]), abs=1e-4)
    assert scores["J"] < validation_scores(NaNForBlack(), others, CPU)["J"]


@pytest.mark.parametrize("group_mode", [True, False], ids=["groups", "alone"])
def test_evaluate_and_predict_skip_and_list_it(tmp_path, group_mode):
    root = odd_sized_set(tmp_path / "data")
    black = black_image(root / "images" / "g0" / "im1.jpg")
    ev = evaluate_samples(NaNForBlack(), find_samples(root, "icoseg").samples, 64, CPU, progress=False,
                          group_mode=group_mode)
    assert ev.summary["images"] == 2 and ev.summary["skipped"] == 1
    assert ev.skipped == [(str(black), f"{black}: {NON_FINITE}")]
    report = predict_folder(NaNForBlack(), 64, root / "images", tmp_path / "out", CPU, progress=False,
                            group_mode=group_mode)
    assert report.written == 2 and report.skipped == [(str(black), f"{black}: {NON_FINITE}")]
    assert not (tmp_path / "out" / "g0" / "im1.png").exists() and (tmp_path / "out" / "g0" / "im0.png").exists()


def test_an_unlabelled_image_with_non_finite_probabilities_is_listed_as_such(tmp_path):
    """It was predicted with its group (unlike an unreadable one, which its group is predicted without)."""
    root = odd_sized_set(tmp_path / "data")
    black = black_image(root / "images" / "g0" / "im1.jpg")
    (root / "ground_truth" / "g0" / "im1.png").unlink()
    ev = evaluate_samples(NaNForBlack(), find_samples(root, "icoseg").samples, 64, CPU, progress=False)
    assert ev.summary["images"] == 2
    assert ev.skipped == [(str(black), f"{black}: {NON_FINITE} (an image without ground truth)")]

