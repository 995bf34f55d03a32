"""apps.retrieval.datasets: CUB-200-2011, Cars196, SOP and class folders on generated fixtures in their official
layouts; class-range split rules, label remapping, auto detection, problems reported; flowers17 (real data)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.io import savemat

from apps.retrieval import RETRIEVAL_LAYOUTS, RetrievalSplit, detect_retrieval_layout, load_retrieval_split
from coseg.data import LayoutError
from tests.apps.retrieval_files import (SOP_TEST, SOP_TRAIN, cars_annotations, tiny_image, write_cars,
                                        write_cars_devkit, write_class_folders, write_cub, write_sop)

CUB_CLASSES = [1, 2, 100, 101, 150, 200]
CARS_CLASSES = [1, 5, 98, 99, 196]


def kinds(split: RetrievalSplit) -> list[str]:
    return [p.kind for p in split.problems]


def check_remapped(split: RetrievalSplit, per_class: int) -> None:
    """Labels are 0..C−1, every label used ``per_class`` times, records sorted by (label, path)."""
    assert sorted(set(split.labels)) == list(range(split.num_classes))
    assert np.bincount(split.labels).tolist() == [per_class] * split.num_classes
    assert split.records == sorted(split.records, key=lambda r: (r.label, r.path))


def test_registry_and_auto_detection(tmp_path):
    assert RETRIEVAL_LAYOUTS.names() == ["cars", "cub", "folders", "sop"]
    with pytest.raises(KeyError, match="valid names: cars, cub, folders, sop"):
        load_retrieval_split(tmp_path, layout="inshop")
    write_cub(tmp_path / "cub", CUB_CLASSES)
    write_cars(tmp_path / "cars", CARS_CLASSES)
    write_sop(tmp_path / "sop")
    write_class_folders(tmp_path / "folders", ["a", "b"])
    for layout in ("cub", "cars", "sop", "folders"):
        assert detect_retrieval_layout(tmp_path / layout) == layout
        assert load_retrieval_split(tmp_path / layout, "all").layout == layout
    assert detect_retrieval_layout(tmp_path / "cub" / "CUB_200_2011") == "cub"
    with pytest.raises(LayoutError, match="data folder not found"):
        load_retrieval_split(tmp_path / "nowhere")


@pytest.mark.parametrize("split, official", [("train", [1, 2, 100]), ("test", [101, 150, 200]),
                                             ("all", CUB_CLASSES)])
def test_cub_class_ranges_and_remapping(tmp_path, split, official):
    write_cub(tmp_path, CUB_CLASSES, per_class=3)
    data = load_retrieval_split(tmp_path, split)  # the folder holding CUB_200_2011 works too
    assert data.layout == "cub" and data.split == split and data.problems == []
    assert data.classes == [f"{c:03d}.Bird_{c}" for c in official]
    check_remapped(data, per_class=3)
    for record in data.records:
        assert record.path.is_file() and record.super_label is None
        assert record.path.parent.name == data.classes[record.label]


def test_cub_problems_are_reported(tmp_path):
    root = write_cub(tmp_path, [1, 2, 101])
    with open(root / "images.txt", "a") as f:
        f.write("not-a-number 001.Bird_1/x.jpg\n"  # bad line
                "7 001.Bird_1/missing.jpg\n"  # listed, not on disk
                "8 002.Bird_2/no_label.jpg\n"  # no class label
                "9 001.Bird_1/odd_class.jpg\n"  # class outside 1–200
                "10 ../../outside.jpg\n"  # escapes the data set
                "11 001.Bird_1/unknown_class.jpg\n"  # class not in classes.txt
                "1 001.Bird_1/again.jpg\n")  # repeated id
    tiny_image(root / "images" / "001.Bird_1" / "no_label.jpg", seed=1)
    with open(root / "image_class_labels.txt", "a") as f:
        f.write("7 1\n9 201\n10 1\n11 150\n99 1\n")  # 99: label of no image
    with open(root / "classes.txt", "a") as f:
        f.write("201 201.Extra\n")
    data = load_retrieval_split(root, "train")
    assert len(data.records) == 4 and data.num_classes == 2
    assert sorted(kinds(data)) == sorted(["bad line", "missing image", "image without class",
                                          "class outside the official ranges", "bad path", "duplicate id",
                                          "class label without image", "unknown class"])
    missing = next(p for p in data.problems if p.kind == "missing image")
    assert missing.path == root / "images" / "001.Bird_1" / "missing.jpg"
    bad = next(p for p in data.problems if p.kind == "bad line")
    assert bad.path == root / "images.txt" and "line 7" in bad.detail and "not-a-number" in str(bad)


def test_cub_missing_index_file_and_unknown_split(tmp_path):
    root = write_cub(tmp_path, [1])
    with pytest.raises(ValueError, match="unknown split 'val'.*train, test, all"):
        load_retrieval_split(root, "val")
    with pytest.raises(LayoutError, match=r"--train-classes \(train_classes\) applies to class folders only"):
        load_retrieval_split(root, "train", train_classes=["001.Bird_1"])
    with pytest.raises(LayoutError, match="no images of split 'test'"):
        load_retrieval_split(root, "test")
    (root / "classes.txt").unlink()
    with pytest.raises(LayoutError, match="index file not found: .*classes.txt"):
        load_retrieval_split(root, "train", layout="cub")


@pytest.mark.parametrize("split, official", [("train", [1, 5, 98]), ("test", [99, 196]), ("all", CARS_CLASSES)])
def test_cars_class_ranges_ignore_the_test_flag(tmp_path, split, official):
    write_cars(tmp_path, CARS_CLASSES, per_class=4)
    data = load_retrieval_split(tmp_path, split)
    assert data.layout == "cars" and data.problems == []
    assert data.classes == [f"Maker Model {c} 2012" for c in official]
    check_remapped(data, per_class=4)  # both test-flag values of every class are in its split
    assert all(r.path.parent == tmp_path / "car_ims" for r in data.records)


def test_cars_problems_are_reported(tmp_path):
    extra = [("car_ims/missing.jpg", np.uint8(3), 0), ("car_ims/000001.jpg", np.uint8(0), 0),
             ("car_ims/000002.jpg", "seven", 0), ("car_ims/000002.jpg", np.inf, 0), ("/abs/car.jpg", np.uint8(3), 1)]
    write_cars(tmp_path, [1, 2], per_class=1, extra=extra)
    data = load_retrieval_split(tmp_path, "train")
    assert len(data.records) == 2
    assert sorted(kinds(data)) == ["bad annotation", "bad annotation", "bad path",
                                   "class outside the official ranges", "missing image"]
    assert "class inf is not an integer" in str(data.problems)
    assert next(p for p in data.problems if p.kind == "missing image").path == tmp_path / "car_ims" / "missing.jpg"


def test_cars_unusable_annotation_files(tmp_path):
    savemat(tmp_path / "cars_annos.mat", {"something": np.arange(3)})
    with pytest.raises(LayoutError, match="not Cars196's cars_annos.mat.*relative_im_path, class"):
        load_retrieval_split(tmp_path, "train", layout="cars")
    (tmp_path / "cars_annos.mat").write_bytes(b"not a MATLAB file at all, just text")
    with pytest.raises(LayoutError, match="cannot read .*cars_annos.mat as a MATLAB file"):
        load_retrieval_split(tmp_path, "train")


def test_cars_single_annotation_file(tmp_path):
    tiny_image(tmp_path / "car_ims" / "000001.jpg", seed=0)
    savemat(tmp_path / "cars_annos.mat", {"annotations": cars_annotations([("car_ims/000001.jpg", 120, 1)])})
    data = load_retrieval_split(tmp_path, "test")
    assert len(data.records) == 1 and data.classes == ["class 120"]  # no class_names in this file


@pytest.mark.parametrize("in_devkit", [True, False])
def test_cars_devkit_distribution_pools_both_parts(tmp_path, in_devkit):
    write_cars_devkit(tmp_path, CARS_CLASSES, per_class=4, in_devkit=in_devkit)
    assert detect_retrieval_layout(tmp_path) == "cars"
    for split, official in (("train", [1, 5, 98]), ("test", [99, 196])):
        data = load_retrieval_split(tmp_path, split)
        assert data.layout == "cars" and data.problems == []
        assert data.classes == [f"Maker Model {c} 2012" for c in official]
        check_remapped(data, per_class=4)  # two images of each class in cars_train/, two in cars_test/
        assert {r.path.parent.name for r in data.records} == {"cars_train", "cars_test"}
        assert all(r.path.is_file() for r in data.records)


def test_cars_devkit_without_test_labels(tmp_path):
    write_cars_devkit(tmp_path, [1, 99], test_labels=False)
    with pytest.raises(LayoutError, match="test labels not found: .*cars_test_annos_withlabels.mat .*no classes"):
        load_retrieval_split(tmp_path, "train")


def test_sop_splits_and_super_classes(tmp_path):
    write_sop(tmp_path, per_class=2)
    train, test, both = (load_retrieval_split(tmp_path, s) for s in ("train", "test", "all"))
    assert train.layout == "sop" and train.problems == [] and test.problems == []
    assert train.classes == [str(c) for c, _, _ in SOP_TRAIN] and test.classes == [str(c) for c, _, _ in SOP_TEST]
    assert train.super_classes == ["bicycle_final", "chair_final"]
    assert test.super_classes == ["bicycle_final", "mug_final"]  # super ids 1 and 3, remapped to 0 and 1
    assert both.num_classes == 6 and both.super_classes == ["bicycle_final", "chair_final", "mug_final"]
    for data, per in ((train, 2), (test, 2), (both, 2)):
        check_remapped(data, per_class=per)
        for record in data.records:
            assert record.path.parent.name == data.super_classes[record.super_label]


def test_sop_bad_lines_and_missing_images(tmp_path):
    root = write_sop(tmp_path)
    with open(root / "Ebay_test.txt", "a") as f:
        f.write("13 11322 3\n"  # no path
                "14 11322 3 mug_final/gone.JPG\n")
    data = load_retrieval_split(root, "test")
    assert len(data.records) == 6
    assert sorted((p.kind, p.path) for p in data.problems) == [("bad line", root / "Ebay_test.txt"),
                                                               ("missing image", root / "mug_final" / "gone.JPG")]
    (root / "Ebay_train.txt").unlink()
    with pytest.raises(LayoutError, match="index file not found: .*Ebay_train.txt"):
        load_retrieval_split(root, "train", layout="sop")


SPLITS = {"train": ["01_Rose", "02_Tulip"], "test": ["03_Daisy", "04_Iris", "05_Lily"]}


@pytest.mark.parametrize("split", ["train", "test"])
def test_class_folders_with_splits_json(tmp_path, split):
    write_class_folders(tmp_path, [*SPLITS["train"], *SPLITS["test"]], per_class=3, splits=SPLITS)
    data = load_retrieval_split(tmp_path, split)
    assert data.layout == "folders" and data.problems == [] and data.classes == SPLITS[split]
    check_remapped(data, per_class=3)
    assert all(r.path.parent.name == data.classes[r.label] for r in data.records)


def test_class_folders_with_train_classes(tmp_path):
    write_class_folders(tmp_path, ["a", "b", "c", "d"], splits={"train": ["a"], "test": ["b"]})
    train = load_retrieval_split(tmp_path, "train", train_classes=["C", "a"])  # matched tolerantly, override json
    test = load_retrieval_split(tmp_path, "test", train_classes=["C", "a"])
    assert train.classes == ["a", "c"] and test.classes == ["b", "d"]
    assert load_retrieval_split(tmp_path, "all").classes == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="'zebra' not found"):
        load_retrieval_split(tmp_path, "train", train_classes=["zebra"])
    with pytest.raises(KeyError, match="split 'val' not in"):
        load_retrieval_split(tmp_path, "val")


def test_class_folders_without_split_information(tmp_path):
    write_class_folders(tmp_path, ["a", "b"])
    tiny_image(tmp_path / "stray.jpg", seed=5)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    data = load_retrieval_split(tmp_path, "all")
    assert data.classes == ["a", "b"] and len(data.records) == 4
    assert [(p.kind, p.path) for p in data.problems] == [("outside any class", tmp_path / "stray.jpg")]
    with pytest.raises(LayoutError, match="no splits.json there and no train classes given"):
        load_retrieval_split(tmp_path, "train")


def test_class_folders_splits_json_with_unknown_class(tmp_path):
    write_class_folders(tmp_path, ["a", "b"])
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["a"], "test": ["bee", "zzz"]}))
    with pytest.raises(ValueError, match=r"^split 'test' of .*splits\.json: cannot resolve .*'zzz' not found"):
        load_retrieval_split(tmp_path, "test")


@pytest.mark.parametrize("split", ["train", "test"])
def test_class_folders_splits_json_with_a_class_in_train_and_test(tmp_path, split):
    write_class_folders(tmp_path, ["a", "b", "c"], splits={"train": ["a", "B"], "test": ["b", "c"]})
    with pytest.raises(ValueError, match=r"splits.json: the class\(es\) b are in both 'train' and 'test'"):
        load_retrieval_split(tmp_path, split)
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["a", "b"], "val": ["b"]}))
    assert load_retrieval_split(tmp_path, "train").classes == ["a", "b"]  # other splits may share classes


@pytest.mark.data
def test_real_flowers17_class_disjoint_splits(shared_data):
    root = shared_data / "flowers17"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    splits = json.loads((root / "splits.json").read_text())
    train, test = load_retrieval_split(root, "train"), load_retrieval_split(root, "test")
    assert train.layout == test.layout == "folders" and train.problems == test.problems == []
    assert train.classes == splits["train"] and len(train.classes) == 8
    assert test.classes == splits["test"] and len(test.classes) == 9
    assert np.bincount(train.labels).tolist() == [80] * 8 and np.bincount(test.labels).tolist() == [80] * 9
    assert not {r.path for r in train.records} & {r.path for r in test.records}
