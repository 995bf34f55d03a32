"""Images and masks whose folder or file names are the same text in two Unicode forms (macOS writes ``É`` decomposed,
``E`` + accent; most other systems composed) pair: before, each was left out as unpaired, "has its stem in another
folder", naming two paths that print alike."""
from __future__ import annotations

import unicodedata

import pytest

from coseg.data import find_samples
from tests.coseg.files import half_mask, left_red_image, write_cv2, write_rgb

COMPOSED = unicodedata.normalize("NFC", "Égypte é")
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)


@pytest.mark.parametrize("layout", ["icoseg", "folders"])
def test_a_group_folder_decomposed_among_the_masks_pairs(tmp_path, layout):
    masks = "ground_truth" if layout == "icoseg" else "masks"
    for i in range(2):
        write_rgb(tmp_path / "images" / COMPOSED / f"{i}.jpg", left_red_image())
        write_cv2(tmp_path / masks / DECOMPOSED / f"{i}.png", half_mask())
    scan = find_samples(tmp_path, layout)
    assert len(scan.labelled) == 2 and not scan.problems
    assert scan.groups == [COMPOSED]  # named after the images' folder


def test_stems_in_two_forms_pair_in_a_groups_own_mask_folder(tmp_path):
    write_rgb(tmp_path / DECOMPOSED / f"{DECOMPOSED}.jpg", left_red_image())
    write_cv2(tmp_path / DECOMPOSED / "GT" / f"{COMPOSED}.png", half_mask())
    scan = find_samples(tmp_path)
    assert len(scan.labelled) == 1 and not scan.problems


def test_an_image_and_a_mask_in_two_forms_side_by_side_pair_in_sbcoseg(tmp_path):
    write_rgb(tmp_path / "ECFB" / "bird" / f"{DECOMPOSED}.jpg", left_red_image())
    write_cv2(tmp_path / "ECFB" / "bird" / f"{COMPOSED}.png", half_mask())
    scan = find_samples(tmp_path, "sbcoseg")
    assert len(scan.labelled) == 1 and not scan.problems
