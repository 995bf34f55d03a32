"""A user's group folder named like an SBCoseg subset (``normal``, ``TR``, ``sd``) does not make ``--layout auto``
read the whole data set as SBCoseg, where the group's images lay "outside any group" and its PNG photos were taken
for masks: a subset folder is one holding a group folder of JPEG images with their PNG masks beside them."""
from __future__ import annotations

import torch

from coseg.data import detect_layout, find_samples, make_synthetic_coseg
from coseg.predict import predict_folder
from tests.coseg.files import half_mask, left_red_image, write_cv2, write_rgb
from tests.coseg.pipeline_fixtures import ConstantModel


def test_photo_groups_named_like_subsets_are_predicted_as_groups(tmp_path):
    photos = tmp_path / "photos"
    for group in ("normal", "TR", "cats"):
        write_rgb(photos / group / "a.jpg", left_red_image())
        write_rgb(photos / group / "b.png", left_red_image())  # a PNG photo, not a mask
    assert detect_layout(photos) == "folders"
    report = predict_folder(ConstantModel(0.8), 32, photos, tmp_path / "out", torch.device("cpu"), progress=False)
    assert report.written == 6 and not report.skipped
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "TR/a.png", "TR/b.png", "cats/a.png", "cats/b.png", "normal/a.png", "normal/b.png"]


def test_a_group_named_normal_with_its_own_mask_folder_is_labelled(tmp_path):
    data = tmp_path / "data"
    for group in ("Normal", "sd"):
        write_rgb(data / group / "a.jpg", left_red_image())
        write_cv2(data / group / "GT" / "a.png", half_mask())
    scan = find_samples(data)
    assert scan.layout == "folders" and scan.groups == ["Normal", "sd"]
    assert len(scan.labelled) == 2 and not scan.problems


def test_sbcoseg_subset_folders_are_still_detected(tmp_path):
    root = make_synthetic_coseg(tmp_path / "SBCoseg", num_groups=5, images_per_group=2, size=32, layout="sbcoseg")
    write_rgb(root / "ECFB" / "loose.jpg", left_red_image())
    scan = find_samples(root)
    assert scan.layout == "sbcoseg" and len(scan.labelled) == 10
    assert {s.subset for s in scan.samples} == {"ECFB", "TR", "MH", "SD", "Normal"}
