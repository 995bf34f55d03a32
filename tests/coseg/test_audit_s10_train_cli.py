"""`coseg train` as a user meets it: a group name that is not found names the option it was given to, a resume of a
run whose data set has gained groups since is refused, not carved anew, a single training group says that nothing is
validated, and groups given on the command line replace the config file's split."""
from __future__ import annotations

import shutil

import pytest

from coseg.config import CosegTrainConfig
from coseg.engine import load_config
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.coseg.test_train_run import TINY, coseg, digests
from tests.reliability.test_bad_inputs import without_share


@pytest.mark.parametrize("option", ["--train-groups", "--val-groups"])
def test_a_group_not_found_names_its_option(tmp_path, option):
    """Both said "cannot resolve 1 group name(s) among 3 groups: 'nosuch' not found", which of the two lists holds
    the typo left to guess."""
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    code, output = coseg("train", "--data", data, "--output", tmp_path / "run", *without_share(TINY), option, "nosuch")
    assert code == 1 and f"Error: {option}: cannot resolve 1 group name(s) among 3 groups: 'nosuch' not found" in output
    assert not (tmp_path / "run").exists()


def test_a_resume_after_groups_were_added_to_the_data_is_refused(tmp_path):
    """The resumed run carved its validation groups again from the grown data set: it trained on its former
    validation group and chose its best epoch on others, with no word said."""
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    more = synthetic_set(tmp_path / "more", groups=6, images=2)
    run = tmp_path / "run"
    assert coseg("train", "--data", data, "--output", run, "--epochs", 1, *TINY)[0] == 0
    before = digests(run)
    for group in ("03-cross", "04-ring", "05-star"):
        for folder in ("images", "ground_truth"):
            shutil.copytree(more / folder / group, data / folder / group)
    code, output = coseg("train", "--resume", "--output", run, "--epochs", 2)
    assert code == 1 and f"{run / 'last.pt'}: the run's data changed since it was trained (" in output, output
    assert "validated_on: " in output and " gone" in output
    assert digests(run) == before


def test_a_single_training_group_says_that_nothing_is_validated(tmp_path):
    """--val-fraction (0.15 by default) holds out no group of one: the run said nothing of it, as if its
    best.safetensors had been chosen on validation groups."""
    data = synthetic_set(tmp_path / "data", groups=1, images=2)
    code, output = coseg("train", "--data", data, "--output", tmp_path / "run", "--epochs", 1, *TINY,
                         "--groups-per-batch", 1, "--val-fraction", 0.15)
    assert code == 0, output
    assert ("no validation: the only training group cannot be held out (--val-fraction 0.15), so best.safetensors "
            "is the last epoch's model") in output
    code, output = coseg("train", "--data", data, "--output", tmp_path / "run0", "--epochs", 1, *TINY,
                         "--groups-per-batch", 1, "--val-fraction", 0)
    assert code == 0 and "no validation" not in output, output


def test_groups_on_the_command_line_replace_the_config_files_split(tmp_path):
    """A run's config.yaml recording `train_split: train` could not be reused with --train-groups: "--train-groups
    and --train-split train both choose the training groups: give one of them", though only the file gave the split
    and the command line cannot unset it (`--train-split ""` is refused)."""
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    (data / "splits.json").write_text('{"train": ["00-star", "01-ellipse"], "test": ["02-polygon"]}')
    config = tmp_path / "my.yaml"
    config.write_text(f"data: {data}\ntrain_split: train\nsplits: {data / 'splits.json'}\n")
    run = tmp_path / "run"
    code, output = coseg("train", "--config", config, "--output", run, "--epochs", 1, *TINY, "--val-fraction", 0,
                         "--train-groups", "00-star,02-polygon")
    assert code == 0, output
    saved = load_config(CosegTrainConfig, run / "config.yaml")
    assert (saved.train_groups, saved.train_split, saved.splits) == (["00-star", "02-polygon"], None, None)

    config.write_text(f"data: {data}\ntrain_groups: [00-star, 02-polygon]\n")  # and the other way round
    cfg = load_config(CosegTrainConfig, config, {"train_split": "train"})
    assert (cfg.train_groups, cfg.train_split) == ([], "train")
    assert load_config(CosegTrainConfig, config, {"splits": "other.json"}).train_groups == ["00-star", "02-polygon"]
