"""Data sets as users bring them: MSRC class folders holding their own ground-truth folder (``cow/GT/``, or
``images/cow/GroundTruth/``) pair their masks instead of training on them as photos; an Internet class without its
``GroundTruth`` folder is reported, not silently left unscored; masks named after their image with a suffix
(``a_GT.bmp``, ``a_mask.PNG``) name that image, so the user sees why nothing pairs."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from coseg.data import find_samples
from coseg.predict import scan_input


def write(path: Path, mask: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((20, 24), np.uint8) if mask else np.random.default_rng(0).integers(0, 255, (20, 24, 3), np.uint8)
    pixels[5:15, 5:15] = 255
    assert cv2.imwrite(str(path), pixels)


def msrc(root: Path, truth: str, mask_name: str = "{stem}.png") -> Path:
    """Classes ``cow`` and ``car`` of two BMP images each, masks in ``root/<class>/<truth>/``."""
    for group in ("car", "cow"):
        for stem in ("1_1_s", "2_1_s"):
            write(root / group / f"{stem}.bmp")
            write(root / group / truth / mask_name.format(stem=stem), mask=True)
    return root


@pytest.mark.parametrize("truth", ["GT", "masks", "ground_truth"])
def test_class_folders_holding_their_mask_folder_pair_with_it(tmp_path, truth):
    # was: cow/GT/ was a group of photos "cow/GT" and no image had a mask (predict segmented the masks)
    root = msrc(tmp_path / "msrc", truth)
    for scan in (find_samples(root), scan_input(root)):
        assert scan.layout == "folders" and scan.problems == []
        assert [(s.group, s.image.name, s.mask) for s in scan.samples] == [
            (group, f"{stem}.bmp", root / group / truth / f"{stem}.png") for group in ("car", "cow")
            for stem in ("1_1_s", "2_1_s")]


def test_class_folders_under_images_holding_their_ground_truth(tmp_path):
    root = tmp_path / "data"
    msrc(root / "images", "GroundTruth")
    write(root / "images" / "car" / "3_1_s.bmp")  # no mask: reported
    write(root / "images" / "horse" / "1_1_s.bmp")  # a class without ground truth: reported too
    scan = find_samples(root)
    assert scan.groups == ["car", "cow", "horse"] and len(scan.labelled) == 4
    assert [(p.kind, p.path.relative_to(root).as_posix()) for p in scan.problems] == [
        ("image without mask", "images/car/3_1_s.bmp"), ("image without mask", "images/horse/1_1_s.bmp")]


def test_a_group_folder_of_photos_named_labels_stays_a_group(tmp_path):
    root = tmp_path / "data"
    write(root / "trip" / "a.jpg")
    write(root / "trip" / "labels" / "b.jpg")  # photos, not masks, pairing with nothing
    scan = find_samples(root)
    assert scan.groups == ["trip", "trip/labels"] and scan.labelled == [] and scan.problems == []


def test_an_internet_class_without_its_ground_truth_folder_is_reported(tmp_path):
    # was: Horse100's images were silently left out of training and evaluation
    data = tmp_path / "internet" / "Data"
    for group in ("Airplane100", "Horse100"):
        for stem in ("a", "b"):
            write(data / group / f"{stem}.jpg")
            if group == "Airplane100":
                write(data / group / "GroundTruth" / f"{stem}.png", mask=True)
    scan = find_samples(data.parent)
    assert scan.layout == "internet" and len(scan.labelled) == 2 and len(scan.samples) == 4
    assert [(p.kind, p.path.name, p.detail) for p in scan.problems] == [
        ("image without mask", f"{stem}.jpg", "its class folder has no GroundTruth folder, which other classes have")
        for stem in ("a", "b")]
    assert scan_input(data.parent).problems == scan.problems


def test_an_internet_data_set_without_any_ground_truth_is_for_prediction(tmp_path):
    write(tmp_path / "Data" / "Car" / "a.jpg")
    scan = find_samples(tmp_path, "internet")
    assert scan.problems == [] and scan.labelled == [] and len(scan.samples) == 1


@pytest.mark.parametrize("layout, image, mask, suffix", [
    ("internet", "cow/1_1_s.bmp", "cow/GroundTruth/1_1_s_GT.bmp", "_GT"),
    ("folders", "images/a/im0.JPG", "masks/a/im0_mask.PNG", "_mask"),
    ("folders", "images/a/x-1.jpg", "masks/a/x-1-gt.png", "-gt")])
def test_a_mask_named_after_its_image_with_a_suffix_names_it(tmp_path, layout, image, mask, suffix):
    write(tmp_path / image)
    write(tmp_path / mask, mask=True)
    other = (tmp_path / image).with_stem("other")  # masks of two suffixes: none pairs (one suffix pairs, see s12)
    write(other)
    write((tmp_path / mask).with_stem("other_seg"), mask=True)
    scan = find_samples(tmp_path)
    assert scan.layout == layout and scan.labelled == []
    rename = "a mask pairs with the image of its exact stem in the same folder: rename the masks without the suffix"
    assert {(p.kind, p.detail) for p in scan.problems} >= {
        ("image without mask", f"the mask {tmp_path / mask}, also unpaired, has its stem followed by '{suffix}'; "
                               f"{rename}"),
        ("mask without image", f"the image {tmp_path / image}, also unpaired, has its stem without the suffix "
                               f"'{suffix}'; {rename}")}


def test_a_suffix_hint_needs_the_same_folder(tmp_path):
    write(tmp_path / "images" / "a" / "im0.jpg")
    write(tmp_path / "masks" / "b" / "im0_mask.png", mask=True)
    scan = find_samples(tmp_path)
    assert [(p.kind, p.detail) for p in scan.problems] == [("image without mask", ""), ("mask without image", "")]
