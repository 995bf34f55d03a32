"""`--masks DIR`: ground-truth masks kept apart from the data set, for `coseg train`, `evaluate` and `split`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from coseg.models import create_model
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.coseg.test_train_run import TINY, coseg


@pytest.fixture
def apart(tmp_path: Path) -> tuple[Path, Path]:
    """An iCoseg-layout set (3 groups of 2 images) whose ground_truth/ was moved out of it: (data, masks)."""
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    masks = tmp_path / "annotations"
    shutil.move(str(data / "ground_truth"), masks)
    return data, masks


def test_train_reads_the_masks_folder_and_records_it(tmp_path: Path, apart: tuple[Path, Path]) -> None:
    """`coseg train` had no way to give the layouts' masks_root: a data set with its masks elsewhere could not be
    trained on."""
    data, masks = apart
    run = tmp_path / "run"
    code, output = coseg("train", "--data", data, "--output", run, "--epochs", 1, *TINY)
    assert code == 1 and "mask" in output and not run.exists(), output
    code, output = coseg("train", "--data", data, "--masks", masks, "--output", run, "--epochs", 1, *TINY)
    assert code == 0, output
    assert yaml.safe_load((run / "config.yaml").read_text())["masks"] == str(masks)


def test_a_masks_folder_that_is_not_there_is_a_usage_error(tmp_path: Path, apart: tuple[Path, Path]) -> None:
    data, masks = apart
    missing = tmp_path / "nosuch"
    for command in (["train", *TINY], ["split"]):
        code, output = coseg(*command, "--data", data, "--masks", missing, "--output", tmp_path / "out")
        assert code == 2 and "'--masks'" in output and str(missing) in output, output
    config = tmp_path / "my.yaml"
    config.write_text(f"masks: {missing}\n")
    code, output = coseg("train", "--config", config, "--data", data, "--output", tmp_path / "out", *TINY)
    assert code == 2 and f"(masks: {missing} in {config}" in output, output
    assert not (tmp_path / "out").exists()


def test_evaluate_and_split_read_the_masks_folder(tmp_path: Path, apart: tuple[Path, Path]) -> None:
    data, masks = apart
    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=0).save(model, {"image_size": "64"})
    fast = ["--no-colour-cut", "--edge-radius", 0, "--quiet"]
    code, output = coseg("evaluate", "--checkpoint", model, "--data", data, "--masks", masks, "--output",
                         tmp_path / "ev", *fast)
    assert code == 0, output
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert len(summary["per_group"]) == 3 and summary["images"] == 6
    code, output = coseg("evaluate", "--checkpoint", model, "--data", data, "--masks", tmp_path / "nosuch",
                         "--output", tmp_path / "ev2", *fast)
    assert code == 2 and "'--masks'" in output and not (tmp_path / "ev2").exists(), output
    code, output = coseg("split", "--data", data, "--masks", masks, "--output", tmp_path / "splits.json")
    assert code == 0, output
    splits = json.loads((tmp_path / "splits.json").read_text())
    assert len(splits["train"]) + len(splits["test"]) == 3


def test_evaluate_records_what_it_scored_and_how(tmp_path: Path, apart: tuple[Path, Path]) -> None:
    """summary.json named the model file only: not the data, the mask folder, the groups nor the inference options,
    so two evaluations could not be told apart."""
    data, masks = apart
    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=0).save(model, {"image_size": "64"})
    code, output = coseg("evaluate", "--checkpoint", model, "--data", data, "--masks", masks, "--output",
                         tmp_path / "ev", "--groups", "00-star", "--no-colour-cut", "--edge-radius", 0, "--flip",
                         "--quiet")
    assert code == 0, output
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    # auto: images/ without ground_truth/ is the folders layout, which pairs them with --masks alike
    assert (summary["data"], summary["masks"], summary["layout"]) == (str(data), str(masks), "folders")
    assert summary["groups"] == ["00-star"] and summary["split"] is None
    settings = summary["settings"]
    assert settings["image_size"] == 64 and settings["flip"] is True and settings["colour"] is None
    assert settings["edges"] is None and settings["group_mode"] is True
