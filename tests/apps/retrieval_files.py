"""Writers of tiny retrieval data sets in the official layouts (CUB-200-2011, Cars196, SOP) and class folders."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy.io import savemat

from tests.coseg.files import write_rgb

CARS_FIELDS = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")


def tiny_image(path: Path, seed: int, size: int = 12) -> Path:
    """A random RGB image of ``size``×``size`` pixels (JPEG or PNG by suffix)."""
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size + 4, 3), dtype=np.uint8)
    return write_rgb(path, rgb)


def write_cub(top: Path, class_ids: Sequence[int], per_class: int = 2) -> Path:
    """``top/CUB_200_2011`` with ``images.txt``, ``image_class_labels.txt``, ``classes.txt`` and
    ``images/<NNN.Name>/*.jpg``; image ids run 1, 2, ... class by class. Returns the CUB_200_2011 folder."""
    root = top / "CUB_200_2011"
    images, labels, classes = [], [], []
    image_id = 0
    for class_id in class_ids:
        folder = f"{class_id:03d}.Bird_{class_id}"
        classes.append(f"{class_id} {folder}")
        for k in range(per_class):
            image_id += 1
            relative = f"{folder}/Bird_{class_id}_{k:04d}.jpg"
            tiny_image(root / "images" / relative, seed=image_id)
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {class_id}")
    for name, lines in (("images.txt", images), ("image_class_labels.txt", labels), ("classes.txt", classes)):
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def cars_annotations(rows: Sequence[tuple[str, object, int]]) -> np.ndarray:
    """The official ``annotations`` struct array (1 × N) of ``cars_annos.mat`` for (relative path, class, test)."""
    annotations = np.zeros((1, len(rows)), dtype=[(f, "O") for f in CARS_FIELDS])
    for i, (relative, class_id, test) in enumerate(rows):
        box = (np.uint16(3), np.uint16(4), np.uint16(90), np.uint16(60))
        annotations[0, i] = (relative, *box, class_id, np.uint8(test))
    return annotations


def write_cars(root: Path, class_ids: Sequence[int], per_class: int = 2,
               extra: Sequence[tuple[str, object, int]] = ()) -> Path:
    """``root/cars_annos.mat`` (``annotations`` + ``class_names`` for 196 classes) and ``root/car_ims/NNNNNN.jpg``;
    the ``test`` flag alternates, as in the official file it is unrelated to the retrieval split. ``extra`` rows
    are appended to the annotations without writing images."""
    rows = []
    for class_id in class_ids:
        for _ in range(per_class):
            relative = f"car_ims/{len(rows) + 1:06d}.jpg"
            tiny_image(root / relative, seed=len(rows))
            rows.append((relative, np.uint8(class_id), len(rows) % 2))
    names = np.empty((1, 196), dtype=object)
    names[0, :] = [f"Maker Model {i} 2012" for i in range(1, 197)]
    savemat(root / "cars_annos.mat", {"annotations": cars_annotations([*rows, *extra]), "class_names": names})
    return root


def _struct_array(fields: Sequence[str], rows: Sequence[tuple]) -> np.ndarray:
    """A MATLAB struct array (1 × N) with ``fields``, one row of values per element."""
    array = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, row in enumerate(rows):
        array[0, i] = row
    return array


def write_cars_devkit(root: Path, class_ids: Sequence[int], per_class: int = 2, in_devkit: bool = True,
                      test_labels: bool = True) -> Path:
    """Cars196 as the devkit distribution: ``cars_train/NNNNN.jpg`` and ``cars_test/NNNNN.jpg`` (each class has
    images in both), ``cars_meta.mat``, ``cars_train_annos.mat`` and ``cars_test_annos.mat`` (no class) in
    ``root/devkit`` (``in_devkit``) or ``root``, and ``root/cars_test_annos_withlabels.mat`` (``test_labels``)."""
    parts: dict[str, list[tuple]] = {"cars_train": [], "cars_test": []}
    for class_id in class_ids:
        for k in range(per_class):
            folder = ("cars_train", "cars_test")[k % 2]
            fname = f"{len(parts[folder]) + 1:05d}.jpg"
            tiny_image(root / folder / fname, seed=len(parts["cars_train"]) + 100 * len(parts["cars_test"]))
            box = (np.uint16(3), np.uint16(4), np.uint16(90), np.uint16(60))
            parts[folder].append((*box, np.uint8(class_id), fname))
    devkit = root / "devkit" if in_devkit else root
    devkit.mkdir(parents=True, exist_ok=True)
    fields = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
    names = np.empty((1, 196), dtype=object)
    names[0, :] = [f"Maker Model {i} 2012" for i in range(1, 197)]
    savemat(devkit / "cars_meta.mat", {"class_names": names})
    savemat(devkit / "cars_train_annos.mat", {"annotations": _struct_array(fields, parts["cars_train"])})
    unlabelled = [(*row[:4], row[5]) for row in parts["cars_test"]]
    savemat(devkit / "cars_test_annos.mat", {"annotations": _struct_array(fields[:4] + fields[5:], unlabelled)})
    if test_labels:
        savemat(root / "cars_test_annos_withlabels.mat", {"annotations": _struct_array(fields, parts["cars_test"])})
    return root


SOP_TRAIN = [(1, 1, "bicycle_final"), (2, 1, "bicycle_final"), (3, 2, "chair_final")]
SOP_TEST = [(11319, 1, "bicycle_final"), (11320, 3, "mug_final"), (11321, 3, "mug_final")]


def write_sop(top: Path, per_class: int = 2) -> Path:
    """``top/Stanford_Online_Products`` with ``Ebay_train.txt`` / ``Ebay_test.txt`` (header + rows image_id class_id
    super_class_id path) for ``SOP_TRAIN`` / ``SOP_TEST`` (class id, super-class id, folder). Returns that folder."""
    root = top / "Stanford_Online_Products"
    image_id = 0
    for part, classes in (("train", SOP_TRAIN), ("test", SOP_TEST)):
        lines = ["image_id class_id super_class_id path"]
        for class_id, super_id, folder in classes:
            for k in range(per_class):
                image_id += 1
                relative = f"{folder}/{class_id}_{k}.JPG"
                tiny_image(root / relative, seed=image_id)
                lines.append(f"{image_id} {class_id} {super_id} {relative}")
        (root / f"Ebay_{part}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_class_folders(root: Path, classes: Sequence[str], per_class: int = 2,
                        splits: Optional[dict[str, list[str]]] = None) -> Path:
    """``root/<class>/imgNNN.jpg`` and, if given, ``root/splits.json``."""
    for c, name in enumerate(classes):
        for k in range(per_class):
            tiny_image(root / name / f"img{k:03d}.jpg", seed=100 * c + k)
    if splits is not None:
        (root / "splits.json").write_text(json.dumps(splits))
    return root
