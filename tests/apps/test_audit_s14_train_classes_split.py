"""`--train-classes` choose the 'train' class folders, the others being 'test': with split 'all' (every class) they
were ignored without a word, a misspelt name too; they are refused with any split but train and test."""
from __future__ import annotations

from pathlib import Path

import pytest

from apps.retrieval.datasets import load_retrieval_split
from apps.retrieval.model import create_retrieval_model
from tests.apps.retrieval_files import write_class_folders
from tests.apps.retrieval_runs import BACKBONE
from tests.apps.test_audit_s12_cli_config import coseg


@pytest.mark.parametrize("split", ["all", "val"])
def test_training_classes_with_another_split_than_train_or_test_are_refused(tmp_path: Path, split: str) -> None:
    data = write_class_folders(tmp_path / "data", ["a", "b", "c"])
    with pytest.raises(ValueError, match=f"split '{split}' with --train-classes \\(train_classes\\), which choose "
                                         "the 'train' classes and make the others 'test': give split train or test"):
        load_retrieval_split(data, split, "folders", ["a", "nope"])
    assert len(load_retrieval_split(data, "all", "folders").classes) == 3
    assert load_retrieval_split(data, "test", "folders", ["a"]).classes == ["b", "c"]


def test_retrieval_evaluate_of_every_class_refuses_training_classes(tmp_path: Path) -> None:
    # was: every class scored, --train-classes (here misspelt) ignored
    model = tmp_path / "model.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(model, metadata={"image_size": "32"})
    data = write_class_folders(tmp_path / "data", ["a", "b", "c"])
    code, output = coseg("retrieval", "evaluate", "--checkpoint", model, "--data", data, "--output", tmp_path / "ev",
                         "--split", "all", "--train-classes", "a,nope", "--quiet")
    assert code == 1 and "Error: split 'all' with --train-classes" in output and "(split 'all' takes every class)" \
        in output, output
    assert not (tmp_path / "ev").exists()
