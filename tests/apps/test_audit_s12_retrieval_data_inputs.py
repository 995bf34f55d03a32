"""apps.retrieval data inputs as a Python API user gives them: class ids as a list (``RetrievalSplit.labels``) or a
numpy array for the head start and the feature dataset, ``train_classes`` as one string, index files saved as
UTF-16 (Notepad's "Unicode"), Cars196 in torchvision's ``stanford_cars`` folder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from apps.retrieval import detect_retrieval_layout, load_retrieval_split
from apps.retrieval.features import FeatureDataset
from apps.retrieval.head_init import head_weights
from tests.apps.retrieval_files import write_cars, write_cars_devkit, write_class_folders, write_cub, write_sop


def test_head_weights_take_the_labels_of_a_split_as_a_list_or_numpy_array():
    features = torch.randn(12, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    weight, bias = head_weights(features, 3, "class_whiten", torch.tensor(labels))
    for given in (labels, np.array(labels), np.array(labels, dtype=np.int32)):
        w, b = head_weights(features, 3, "class_whiten", given)
        assert torch.equal(w, weight) and torch.equal(b, bias)
    with pytest.raises(TypeError, match="labels must be integer class ids, got torch.float"):
        head_weights(features, 3, "class_whiten", [float(c) + 0.5 for c in labels])
    with pytest.raises(ValueError, match=r"labels must have shape \(12\)"):
        head_weights(features, 3, "class_whiten", labels[:-1])


def test_feature_dataset_takes_labels_as_a_list():
    features = torch.randn(2, 4, 3)
    items = FeatureDataset(features, [3, 1, 1, 3])
    assert items.labels.dtype == torch.long and [items[i]["label"] for i in range(4)] == [3, 1, 1, 3]
    with pytest.raises(TypeError, match="labels must be integer class ids"):
        FeatureDataset(features, [0.5, 1.0, 1.0, 0.5])  # was: int(0.5) = class 0 without a word


def test_train_classes_given_as_one_string_are_refused_by_name(tmp_path):
    write_class_folders(tmp_path, ["a", "b", "cat"])
    assert load_retrieval_split(tmp_path, "train", train_classes=["cat"]).classes == ["cat"]
    with pytest.raises(TypeError, match="train_classes must be a list of class folder names, not the string 'cat'"):
        load_retrieval_split(tmp_path, "train", train_classes="cat")  # was: "'t' not found"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_index_files_saved_as_utf16_with_a_byte_order_mark(tmp_path, encoding):
    root = write_cub(tmp_path, [1, 2, 101])
    expected = load_retrieval_split(root, "all")
    for name in ("images.txt", "image_class_labels.txt", "classes.txt"):
        text = (root / name).read_text().replace("\n", "\r\n")
        (root / name).write_bytes(("\ufeff" + text).encode(encoding))
    read = load_retrieval_split(root, "all")
    assert read.problems == [] and read.records == expected.records and read.classes == expected.classes


def test_sop_index_saved_as_utf16(tmp_path):
    root = write_sop(tmp_path)
    expected = load_retrieval_split(root, "train")
    index = root / "Ebay_train.txt"
    index.write_bytes(index.read_text().encode("utf-16"))
    read = load_retrieval_split(root, "train")
    assert read.problems == [] and read.records == expected.records and read.super_classes == ["bicycle_final",
                                                                                               "chair_final"]


def test_a_bad_line_of_one_integer_column_says_an_integer(tmp_path):
    root = write_cub(tmp_path, [1, 101])
    with (root / "images.txt").open("a") as f:
        f.write("x 001.Bird_1/Bird_1_0000.jpg\n")
    problems = [str(p) for p in load_retrieval_split(root, "all").problems]
    assert len(problems) == 1 and "line 5: 'x 001.Bird_1/Bird_1_0000.jpg' (expected an integer and a path or name)" \
        in problems[0] and "images.txt" in problems[0]


@pytest.mark.parametrize("distribution", ["devkit", "cars_annos.mat"])
def test_cars_in_torchvisions_stanford_cars_folder(tmp_path, distribution):
    """torchvision's StanfordCars keeps the devkit distribution in ``<root>/stanford_cars``: given ``<root>``, it was
    read as class folders named 'stanford_cars/cars_train' and 'stanford_cars/cars_test'."""
    inner = tmp_path / "stanford_cars"
    if distribution == "devkit":
        write_cars_devkit(inner, [1, 98, 99, 196])
    else:
        write_cars(inner, [1, 98, 99, 196])
    assert detect_retrieval_layout(tmp_path) == "cars"
    for split, official in (("train", [1, 98]), ("test", [99, 196])):
        data = load_retrieval_split(tmp_path, split)
        assert data.layout == "cars" and data.problems == [] and len(data.records) == 4
        assert data.classes == [f"Maker Model {c} 2012" for c in official]
        assert all(r.path.is_relative_to(inner) for r in data.records)
