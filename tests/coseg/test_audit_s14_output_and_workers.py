"""Found by the s14 audit of the options: an empty --output (an unset shell variable) of evaluate, predict and demo
wrote into the current folder; a negative worker count of the Python API ran in the main process without a word; the
hint for two names resolving to one group did not name @FILE; the warnings about groups seen in training listed names
holding commas unquoted, so "a, b" read as two."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coseg.data.splits import resolve_groups
from coseg.evaluate import TRAINED_ON, overlap_warnings
from coseg.predict import predict_folder
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set
from tests.coseg.test_train_run import coseg


@pytest.mark.parametrize("command", [["evaluate", "--checkpoint", "m.safetensors", "--data", "DATA"],
                                     ["predict", "--checkpoint", "m.safetensors", "--input", "DATA"],
                                     ["predict", "--checkpoint", "m.safetensors", "--input", "DATA", "--output", "o",
                                      "--overlays"],
                                     ["demo", "--minutes", "0.01"]], ids=["evaluate", "predict", "overlays", "demo"])
def test_an_empty_output_folder_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 command: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "DATA").mkdir()
    (tmp_path / "m.safetensors").write_bytes(b"")
    option = command[-1] if command[-1] == "--overlays" else "--output"
    code, output = coseg(*command, *([] if option == "--overlays" else ["--output"]), "")
    assert code == 2 and f"'{option}': is empty (the current folder is '.')" in output, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DATA", "m.safetensors"]


def test_a_negative_worker_count_is_refused(tmp_path: Path) -> None:
    data = odd_sized_set(tmp_path / "data")
    with pytest.raises(ValueError, match="workers"):
        predict_folder(ConstantModel(0.8), 32, data / "images", tmp_path / "out", torch.device("cpu"), workers=-1,
                       progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


def test_two_names_of_one_group_point_to_a_names_file_when_the_group_holds_a_comma() -> None:
    with pytest.raises(ValueError, match="name it in an @FILE, one name a line"):
        resolve_groups(["028 Cheetah-National Zoo", " Washington DC-smata2"],
                       ["028 Cheetah-National Zoo, Washington DC-smata2", "other"])


def test_names_seen_in_training_are_quoted_so_a_comma_in_one_is_not_read_as_two() -> None:
    lines = overlap_warnings({TRAINED_ON: ["Zoo, Washington", "Goose"]}, 3)
    assert "('Zoo, Washington', 'Goose')" in lines[0]
