"""The trainers' errors for data they cannot train on name what to do: class folders without a split say which
option or file gives one (in the format the layout reads), masks named otherwise name the first unpaired file."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import main
from apps.retrieval.datasets import load_retrieval_split
from coseg.data import LayoutError
from tests.apps.retrieval_files import write_class_folders
from tests.apps.test_cli_user_mistakes import own_set
from tests.reliability.test_bad_inputs import TINY_RETRIEVAL


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_class_folders_without_a_split_name_the_option_and_the_file(tmp_path: Path) -> None:
    data = write_class_folders(tmp_path / "ret", ["a", "b", "c", "d"])
    code, output = invoke("retrieval", "train", "--data", data, "--output", tmp_path / "run", *TINY_RETRIEVAL)
    assert code == 1 and output.strip() == (
        f"Error: cannot tell the 'train' classes of {data}: no splits.json there and no train classes given: give "
        f"--train-classes a,b,... (the other class folders are 'test') or write {data}/splits.json "
        '({"train": [class folder, ...], "test": [...]}); split \'all\' takes every class')
    assert not (tmp_path / "run").exists()
    # what the message says works: the option, or the file in that format
    assert load_retrieval_split(data, "train", train_classes=["a", "b"]).classes == ["a", "b"]
    (data / "splits.json").write_text(json.dumps({"train": ["a", "b"], "test": ["c", "d"]}))
    assert load_retrieval_split(data, "test").classes == ["c", "d"]


def test_another_split_of_class_folders_names_the_file(tmp_path: Path) -> None:
    data = write_class_folders(tmp_path / "ret", ["a", "b"])
    with pytest.raises(LayoutError) as refused:
        load_retrieval_split(data, "val")
    assert str(refused.value) == (
        f"cannot tell the 'val' classes of {data}: no splits.json there and no train classes given: write "
        f'{data}/splits.json ({{"val": [class folder, ...], ...}}); split \'all\' takes every class')


def test_training_on_masks_named_otherwise_names_the_first_unpaired_file(tmp_path: Path) -> None:
    data = own_set(tmp_path / "seg2", "{stem}_mask.png")
    last = data / "masks" / "grüne Kreise" / "img2_mask.png"
    last.rename(last.with_name("img2_GT.png"))  # two suffixes: none pairs (with one, they pair)
    code, output = invoke("train", "--data", data, "--output", tmp_path / "run", "--members", 1, "--epochs", 1,
                          "--weights", "none", "--image-size", 64, "--device", "cpu", "--quiet")
    line, = output.strip().splitlines()
    assert code == 1 and line.startswith(f"Error: {data}: none of its 3 image(s) has a mask (folders layout; a mask is "
                                         "paired with the image of its stem), so there is nothing to train on; 3 "
                                         "unpaired file(s) or folder(s), the first: mask "
                                         f"without image: {data}/masks/")
    assert re.search(r"masks/.*/img0_mask\.png \(the image .*/img0\.\w+, also unpaired, has its stem without the "
                     r"suffix '_mask'; a mask pairs with the image of its exact stem in the same folder: rename the "
                     r"masks without the suffix\)$", line), line
    assert not (tmp_path / "run").exists()


def test_more_classes_per_batch_than_training_classes_names_the_option(tmp_path: Path) -> None:
    # was the sampler's own "classes_per_batch (4) exceeds the number of classes in labels (3)"
    data = write_class_folders(tmp_path / "ret", ["a", "b", "c", "d"])
    code, output = invoke("retrieval", "train", "--data", data, "--train-classes", "a,b,c", "--output",
                          tmp_path / "run", *TINY_RETRIEVAL, "--classes-per-batch", 4, "--val-fraction", 0)
    assert code == 2 and output.strip() == ("Error: --classes-per-batch 4, but training has 3 class(es) (those not "
                                            "held out for validation): lower --classes-per-batch to at most 3")
    assert not (tmp_path / "run").exists()
