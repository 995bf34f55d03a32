"""Data sets as users bring them: the pipeline says what is missing instead of failing elsewhere, an ensemble
validated only on empty masks reports no J."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from coseg.config import CosegTrainConfig
from coseg.data import make_synthetic_coseg
from coseg.train import train


def tiny_config(data: Path, output: Path, **changes) -> CosegTrainConfig:
    settings = dict(members=1, epochs=1, weights="none", image_size=32, groups_per_batch=2, images_per_group=2,
                    triplet_pixels=4, group_levels=0, augment=False, device="cpu", quiet=True)
    return CosegTrainConfig(data=str(data), output=str(output), **{**settings, **changes})


def test_training_without_masks_says_so(tmp_path):
    data = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=2, size=32, layout="folders")
    shutil.rmtree(data / "masks")  # a folder of images only, as for predict
    for members in (1, 2):
        output = tmp_path / f"run{members}"
        with pytest.raises(ValueError, match=r"none of its 4 image\(s\) has a mask \(folders layout\), so there is "
                                             "nothing to train on"):
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
