"""Official layouts whose index gives two class ids one name (a CUB-format ``classes.txt`` of one's own data, a Cars196
``class_names`` cell array): the classes stay apart in training, validation and the model file's records."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from scipy.io import loadmat, savemat

from apps.retrieval.datasets import load_retrieval_split
from apps.retrieval.train import training_records
from tests.apps.retrieval_files import write_cars, write_cub
from tests.apps.retrieval_runs import tiny_config


def _per_class(records) -> list[int]:
    return sorted(Counter(r.label for r in records).values())


def test_cub_classes_of_one_name_are_trained_as_two(tmp_path: Path) -> None:
    cub = write_cub(tmp_path, [1, 2, 3, 4, 5, 6, 101, 102], per_class=3)
    lines = (cub / "classes.txt").read_text().splitlines()
    (cub / "classes.txt").write_text("\n".join("2 Sparrow" if line.startswith("2 ") else
                                               "1 Sparrow" if line.startswith("1 ") else line for line in lines) + "\n")
    cfg = tiny_config(tmp_path, tmp_path / "run", val_classes=["Sparrow (class 2)", "004.Bird_4"])
    split, records, train_classes, val_classes = training_records(cfg)
    assert split.classes[:2] == ["Sparrow (class 1)", "Sparrow (class 2)"]
    assert train_classes == ["Sparrow (class 1)", "003.Bird_3", "005.Bird_5", "006.Bird_6"]
    assert val_classes == ["Sparrow (class 2)", "004.Bird_4"]
    assert _per_class(records) == [3, 3, 3, 3]  # not class 2's images under class 1's label
    assert load_retrieval_split(tmp_path, "test").classes == ["101.Bird_101", "102.Bird_102"]


def test_cars_classes_of_one_name_are_trained_as_two(tmp_path: Path) -> None:
    write_cars(tmp_path, [1, 2, 3, 4, 99, 100], per_class=2)
    mat = loadmat(tmp_path / "cars_annos.mat")
    mat["class_names"][0, 2] = np.array(["Maker Model 1 2012"])  # class 3 named as class 1
    savemat(tmp_path / "cars_annos.mat", {"annotations": mat["annotations"], "class_names": mat["class_names"]})
    _, records, train_classes, _ = training_records(tiny_config(tmp_path, tmp_path / "run", val_fraction=0))
    assert train_classes == ["Maker Model 1 2012 (class 1)", "Maker Model 2 2012", "Maker Model 1 2012 (class 3)",
                             "Maker Model 4 2012"]
    assert _per_class(records) == [2, 2, 2, 2]
