"""Data sets as users bring them: the pipeline says what is missing instead of failing elsewhere, an ensemble
validated only on empty masks reports no J, and predicting an Internet or SBCoseg data set leaves its ground truth
alone."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from coseg.config import CosegTrainConfig
from coseg.data import make_synthetic_coseg
from coseg.predict import predict_folder
from coseg.report.build import build_report
from coseg.train import train
from tests.coseg.pipeline_fixtures import ConstantModel

CPU = torch.device("cpu")


def tiny_config(data: Path, output: Path, **changes) -> CosegTrainConfig:
    settings = dict(members=1, epochs=1, weights="none", image_size=32, groups_per_batch=2, images_per_group=2,
                    triplet_pixels=4, group_levels=0, augment=False, device="cpu", quiet=True)
    return CosegTrainConfig(data=str(data), output=str(output), **{**settings, **changes})


def test_training_without_masks_says_so(tmp_path):
    data = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=2, size=32, layout="folders")
    shutil.rmtree(data / "masks")  # a folder of images only, as for predict
    for members in (1, 2):
        output = tmp_path / f"run{members}"
        with pytest.raises(ValueError, match=r"none of its 4 image\(s\) has a mask \(folders layout; a mask is paired "
                                             r"with the image of its stem\), so there is nothing to train on"):
            train(tiny_config(data, output, members=members))
        assert not output.exists()  # an ensemble writes no config.yaml of a run that cannot start


def test_no_training_group_left_says_why(tmp_path):
    data = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=2, size=32, layout="icoseg",
                                group_names=["a, b", "c"])
    (data / "splits.json").write_text('{"train": [], "test": ["c"]}')
    with pytest.raises(ValueError, match="split 'train' of .*splits.json lists no group"):
        train(tiny_config(data, tmp_path / "run", train_split="train"))
    with pytest.raises(ValueError, match="all 2 training group"):
        train(tiny_config(data, tmp_path / "run", val_groups=["a, b", "c"], members=2))
    assert not (tmp_path / "run").exists()


def test_ensemble_validated_on_empty_masks_only_has_no_validation_j(tmp_path):
    data = tmp_path / "data"
    make_synthetic_coseg(data, num_groups=2, images_per_group=2, size=32, layout="icoseg")
    make_synthetic_coseg(data, num_groups=1, images_per_group=2, size=32, layout="icoseg", group_names=["noise"],
                         empty_per_group=2)  # like an Internet class of noise images only
    result = train(tiny_config(data, tmp_path / "run", members=2, epochs=2, val_groups=["noise"]))
    assert result.val_groups == ["noise"] and len(result.members) == 2
    assert result.fit.best_metric is None  # as a single run's: there is no J to select or report
    assert all(member.best_metric is None for member in result.members)


@pytest.mark.parametrize("passed", ["root", "Data", "one class"])
def test_predicting_an_internet_data_set_leaves_its_ground_truth_alone(tmp_path, passed):
    root = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=2, size=32, layout="internet")
    folder = {"root": root, "Data": root / "Data", "one class": root / "Data" / "00-star"}[passed]
    images = sorted(p.relative_to(folder) for p in folder.rglob("*.jpg"))
    (tmp_path / "model.safetensors").write_bytes(b"a model")
    report = predict_folder(ConstantModel(0.8), 32, folder, tmp_path / "out", CPU, progress=False,
                            checkpoint=tmp_path / "model.safetensors")
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.png"))
    assert written == [p.with_suffix(".png") for p in images] and report.written == len(images)
    assert not any("GroundTruth" in p.parts for p in written) and not report.skipped
    build_report(tmp_path / "out", progress=False)  # its report lists the images predict read, no mask files
    page = (tmp_path / "out" / "report.html").read_text()
    assert "GroundTruth" not in page and "no mask" not in page and all(p.name in page for p in images)


@pytest.mark.parametrize("passed", ["root", "one subset"])
def test_predicting_an_sbcoseg_data_set_predicts_its_images_not_its_masks(tmp_path, passed):
    root = make_synthetic_coseg(tmp_path / "data", num_groups=5, images_per_group=2, size=32, layout="sbcoseg")
    folder = root if passed == "root" else root / "TR"
    images = sorted(p.relative_to(folder) for p in folder.rglob("*.jpg"))
    report = predict_folder(ConstantModel(0.8), 32, folder, tmp_path / "out", CPU, progress=False)
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.png"))
    assert written == [p.with_suffix(".png") for p in images] and report.written == len(images) > 0
    assert not report.skipped  # the PNG masks beside the images are neither predicted nor called clashes
