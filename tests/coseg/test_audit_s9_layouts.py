"""Images and masks whose names differ only in case (``b.JPG`` and ``B.png``, folders ``Cat/`` and ``cat/``), as
files copied from macOS or Windows, where they are one name, often are: they pair with nothing, and each unpaired
file names the other, so the user sees why."""
from __future__ import annotations

import numpy as np
import pytest

from coseg.data import find_samples
from tests.coseg.files import half_mask, write_cv2, write_rgb

NOTE = "also unpaired, has its folder and stem but for case; an image and its mask pair by folder and stem, case " \
       "included: rename one"


@pytest.mark.parametrize("layout", ["icoseg", "sbcoseg"])
def test_an_image_and_a_mask_named_apart_only_by_case_name_each_other(tmp_path, layout):
    # was: "image without mask" and "mask without image" without a word on why
    files = {"icoseg": [("images/Cat/b.JPG", "ground_truth/Cat/B.png"), ("images/dog/a.jpg", "ground_truth/Dog/a.png"),
                        ("images/Cat/c.JPG", "ground_truth/Cat/c.png")],
             "sbcoseg": [("ECFB/cat/b.jpg", "ECFB/cat/B.PNG"), ("ECFB/cat/c.jpg", "ECFB/cat/c.PNG")]}[layout]
    for image, mask in files:
        write_rgb(tmp_path / image, np.full((12, 16, 3), 90, np.uint8))
        write_cv2(tmp_path / mask, half_mask().astype(np.uint8) * 255)
    scan = find_samples(tmp_path, layout)
    assert [s.image.name for s in scan.labelled] == [files[-1][0].rsplit("/", 1)[1]]  # paired: no note of case
    expected = []
    for image, mask in files[:-1]:
        expected += [("image without mask", tmp_path / image, f"the mask {tmp_path / mask}, {NOTE}"),
                     ("mask without image", tmp_path / mask, f"the image {tmp_path / image}, {NOTE}")]
    assert sorted((p.kind, p.path, p.detail) for p in scan.problems) == sorted(expected)


@pytest.mark.parametrize("layout", ["folders", "icoseg"])
def test_a_nas_thumbnail_folder_is_ignored(tmp_path, layout):
    # was: a Synology NAS's @eaDir/<photo name>/SYNOPHOTO_THUMB_*.jpg became one group per photo (predicted, or
    # listed as images without masks), though no user put them there
    images = tmp_path / ("images" if layout == "icoseg" else "photos")
    write_rgb(images / "g" / "a.jpg", np.full((12, 16, 3), 90, np.uint8))
    for thumb in ("SYNOPHOTO_THUMB_M.jpg", "SYNOPHOTO_THUMB_XL.jpg"):
        write_rgb(images / "g" / "@eaDir" / "a.jpg" / thumb, np.full((12, 16, 3), 90, np.uint8))
    if layout == "icoseg":
        write_cv2(tmp_path / "ground_truth" / "g" / "a.png", half_mask().astype(np.uint8) * 255)
    scan = find_samples(tmp_path if layout == "icoseg" else images, layout)
    assert [(s.image, s.group) for s in scan.samples] == [(images / "g" / "a.jpg", "g")]
    assert scan.problems == []
