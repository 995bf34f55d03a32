"""Audit (session 9) of the retrieval trainer's data: class folders named for a split that hold no image, classes
of which no image can be read, validation classes outside the training split."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from apps.cli import main
from apps.retrieval.datasets import load_retrieval_split
from apps.retrieval.train import train
from coseg.data import LayoutError
from tests.apps.retrieval_files import write_class_folders
from tests.apps.retrieval_runs import BACKBONE, tiny_config, tiny_set


def test_class_folder_without_images_is_refused_as_such(tmp_path):
    write_class_folders(tmp_path, ["a", "b", "c", "d"], splits={"train": ["a", "b", "e"], "test": ["c", "d"]})
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("not an image")
    with pytest.raises(LayoutError, match=r"^the class folder\(s\) 'e' named by split 'train' of .*splits\.json hold "
                                          "no image file"):
        load_retrieval_split(tmp_path, "train")
    with pytest.raises(LayoutError, match=r"'e' named by --train-classes hold no image file"):
        load_retrieval_split(tmp_path, "train", train_classes=["a", "E"])  # matched tolerantly, as a folder is
    assert load_retrieval_split(tmp_path, "test").classes == ["c", "d"]


def test_class_folder_without_images_in_the_other_split(tmp_path):
    """Training on 'train' is not stopped by an empty folder named for 'test' (still checked for overlap)."""
    write_class_folders(tmp_path, ["a", "b", "c"], splits={"train": ["a", "b"], "test": ["c", "e"]})
    (tmp_path / "e").mkdir()
    assert load_retrieval_split(tmp_path, "train").classes == ["a", "b"]
    with pytest.raises(LayoutError, match="'e' named by split 'test'"):
        load_retrieval_split(tmp_path, "test")
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["a", "b", "e"], "test": ["c", "e"]}))
    with pytest.raises(ValueError, match=r"class\(es\) e are in both 'train' and 'test'"):
        load_retrieval_split(tmp_path, "test")


def test_missing_name_beside_a_folder_without_images(tmp_path):
    write_class_folders(tmp_path, ["a", "b"], splits={"train": ["a", "zz"], "test": ["b"]})
    (tmp_path / "e").mkdir()
    with pytest.raises(ValueError, match=r"'zz' not found \(class folders holding no image file: 'e'\)"):
        load_retrieval_split(tmp_path, "train")


def test_classes_of_which_no_image_could_be_read_are_named(tmp_path):
    """A training class and a validation class whose files are all corrupt were dropped with only their files
    listed: the run now names the classes left out."""
    data = tiny_set(tmp_path / "data")
    for name in ("class1", "class3"):
        for path in (data / name).iterdir():
            path.write_bytes(f"not an image: {path}".encode())  # not identical: classes sharing files are refused
    args = ["retrieval", "train", "--data", data, "--output", tmp_path / "run", "--backbone", BACKBONE, "--weights",
            "none", "--image-size", 32, "--embedding-dim", 8, "--classes-per-batch", 2, "--samples-per-class", 2,
            "--val-classes", "class3,class4,class5", "--epochs", 1, "--quiet"]
    result = CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert ("skipped 2 class(es) of which no image could be read (left out of training and validation):\n"
            "  class1\n  class3\n") in result.output


def test_validation_classes_outside_the_training_split_name_the_option(tmp_path):
    """--val-classes naming a test class said only "'class6' not found", naming no option."""
    data = tiny_set(tmp_path / "data")
    with pytest.raises(ValueError, match=r"^--val-classes \(held out of the training split 'train'\): cannot resolve "
                                         r"1 class name\(s\) among 6 classes: 'class6' not found"):
        train(tiny_config(data, tmp_path / "run", val_classes=["class5", "class6"], val_fraction=0.2))
    assert not (tmp_path / "run").exists()


def test_a_folder_of_nested_class_folders_is_not_one_without_images(tmp_path):
    write_class_folders(tmp_path, ["a/b", "a/c", "d"], splits={"train": ["a/b", "zz"], "test": ["d"]})
    with pytest.raises(ValueError, match=r"'zz' not found[^(]*$"):  # no note: 'a' holds the classes a/b and a/c
        load_retrieval_split(tmp_path, "train")
