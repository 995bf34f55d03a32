"""An empty split key (`--split ""`, `--train-split ""`: a shell variable left unset) is refused: it used to choose
every group, the test split's too, without a word."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import main
from coseg.data import make_synthetic_coseg
from tests.coseg.test_evaluate_partial import network
from tests.coseg.test_train_run import TINY


def split_set(tmp_path: Path) -> Path:
    root = make_synthetic_coseg(tmp_path / "data", num_groups=3, images_per_group=2, size=32)
    (root / "splits.json").write_text(json.dumps({"train": ["00-star", "01-ellipse"], "test": ["02-polygon"]}))
    return root


@pytest.mark.parametrize("key", ["", "  "])
def test_evaluate_refuses_an_empty_split_key(tmp_path, key):
    root = split_set(tmp_path)
    model = tmp_path / "model.safetensors"
    network(2.0).save(model, metadata={"image_size": "64"})
    result = CliRunner().invoke(main, [str(a) for a in ["evaluate", "--checkpoint", model, "--data", root, "--device",
                                                         "cpu", "--quiet", "--output", tmp_path / "ev",
                                                         "--split", key]])
    assert result.exit_code != 0
    assert "--split is empty" in result.output
    assert not (tmp_path / "ev").exists()


def test_train_refuses_an_empty_training_split_key(tmp_path):
    root = split_set(tmp_path)
    result = CliRunner().invoke(main, [str(a) for a in ["train", "--data", root, "--train-split", "", *TINY,
                                                         "--epochs", 1, "--output", tmp_path / "run"]])
    assert result.exit_code != 0
    assert "--train-split is empty" in result.output
    assert not (tmp_path / "run" / "best.safetensors").exists()
