"""CUB-200-2011 copies without ``image_class_labels.txt``: still CUB, with the metric-learning split (classes 1–100
train, 101–200 test) taken from the numbered class folders, as the official file gives it."""
from __future__ import annotations

import pytest

from apps.retrieval.datasets import detect_retrieval_layout, load_retrieval_split
from tests.apps.retrieval_files import write_cub

CLASSES = [1, 2, 101, 102]


@pytest.mark.parametrize("kept", [("train_test_split.txt",), ("classes.txt",), ()])
@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_cub_without_class_labels_keeps_the_official_split(tmp_path, kept, split):
    root = write_cub(tmp_path, CLASSES)
    expected = load_retrieval_split(tmp_path, split)
    (root / "image_class_labels.txt").unlink()
    if "classes.txt" not in kept:
        (root / "classes.txt").unlink()
    if "train_test_split.txt" in kept:  # the classification split of the official copy: 1 = train image
        (root / "train_test_split.txt").write_text("".join(f"{i} {i % 2}\n" for i in range(1, 9)))
    assert detect_retrieval_layout(tmp_path) == "cub"
    data = load_retrieval_split(tmp_path, split)
    assert data.layout == "cub" and data.problems == []
    assert data.records == expected.records and data.classes == expected.classes


def test_cub_without_class_labels_names_classes_by_classes_txt_and_reports_unnumbered_folders(tmp_path):
    root = write_cub(tmp_path, CLASSES)
    (root / "image_class_labels.txt").unlink()
    (root / "classes.txt").write_text("1 Albatross\n2 Auklet\n101 Tern\n102 Wren\n")
    stray = root / "images" / "misc" / "x.jpg"
    stray.parent.mkdir()
    stray.write_bytes((root / "images" / "001.Bird_1" / "Bird_1_0000.jpg").read_bytes())
    with open(root / "images.txt", "a") as f:
        f.write("9 misc/x.jpg\n")
    data = load_retrieval_split(tmp_path, "train")
    assert data.classes == ["Albatross", "Auklet"] and len(data.records) == 4
    (problem,) = data.problems
    assert problem.kind == "image without class" and problem.path == stray
    assert "image_class_labels.txt" in problem.detail and "numbered class folder" in problem.detail


def test_a_class_folder_tree_with_an_images_txt_of_its_own_stays_folders(tmp_path):
    """Only images.txt, in class folders that are not numbered like CUB's: not taken for CUB."""
    root = write_cub(tmp_path, [1])
    for name in ("image_class_labels.txt", "classes.txt"):
        (root / name).unlink()
    (root / "images" / "001.Bird_1").rename(root / "images" / "birds")
    assert detect_retrieval_layout(tmp_path / "CUB_200_2011") == "folders"
