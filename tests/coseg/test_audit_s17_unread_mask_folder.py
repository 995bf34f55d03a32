"""Masks kept beside ``images/`` in a folder of a name the layouts do not look for (``segmentations/``): `coseg train`
said the folder held "12 image(s) outside DATA/images ...; to use them, pass this folder itself or move it under
images/", advice that would make the masks training images. It now says that its files are named as the images, how
to use them as masks, and names that folder first when no image has a mask."""
from __future__ import annotations

import pytest

from coseg.data import find_samples
from coseg.selection import nothing_labelled
from tests.coseg.files import half_mask, left_red_image, write_cv2, write_rgb
from tests.coseg.test_train_run import TINY, coseg


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    for group in ("cat", "dog"):
        for i in range(2):
            write_rgb(root / "images" / group / f"{i}.jpg", left_red_image())
            write_cv2(root / "segmentations" / group / f"{i}.png", half_mask())
    write_rgb(root / "a_extra" / "x.jpg", left_red_image())  # listed before it
    return root


def test_a_mask_folder_of_another_name_is_named_as_such(data):
    scan = find_samples(data)
    assert not scan.labelled
    folder = next(p for p in scan.problems if p.path == data / "segmentations")
    assert folder.kind == "skipped folder"
    assert "4 file(s) named as images of" in folder.detail and "move it under images/" not in folder.detail
    assert f"rename it masks/ (train, evaluate and split also take --masks {data / 'segmentations'})" in folder.detail
    extra = next(p for p in scan.problems if p.path == data / "a_extra")
    assert "to use them, pass this folder itself or move it under images/" in extra.detail
    message = nothing_labelled(data, "auto", scan, scan.problems, "train on")
    assert message.endswith(f"2 unpaired file(s) or folder(s), among them: {folder}")


def test_train_names_the_mask_folder_and_trains_with_masks_given(data, tmp_path):
    code, output = coseg("train", "--data", data, "--output", tmp_path / "run", "--epochs", 1, *TINY)
    assert code == 1 and "among them: skipped folder: " in output and "rename it masks/" in output, output
    code, output = coseg("train", "--data", data, "--masks", data / "segmentations", "--output", tmp_path / "run",
                         "--epochs", 1, *TINY, "--val-fraction", 0)
    assert code == 0, output
