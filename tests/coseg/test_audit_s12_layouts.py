"""Data sets as users bring them (s12): masks named after their image plus one suffix (``a_GT.png``, MSRC's
``1_s_GT.bmp``, also beside the images) pair with it and a note says so; a data set given one folder too high
(``X/`` holding only ``X/SBCoseg/``) says "did you mean"; a 32-bit integer TIFF says what it is; one SBCoseg group
folder given itself keeps its subset's name; a missing mask folder is an error."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from coseg.data import NOTE_KINDS, ImageReadError, LayoutError, find_samples, make_synthetic_coseg, read_image
from tests.coseg.test_audit_s11_layouts_user_sets import write


@pytest.mark.parametrize("suffix", ["_GT", "_mask", "-mask", "_gt", " mask", ".jpg"])
def test_masks_named_after_their_image_plus_one_suffix_pair_with_it(tmp_path, suffix):
    # was: each image "without mask", each mask "without image", and training found nothing to train on
    for stem in ("a", "a_2", "b"):  # a's masks: a<suffix> and a_2<suffix>; with one suffix a<suffix> is a's
        write(tmp_path / "images" / "g" / f"{stem}.jpg")
        write(tmp_path / "masks" / "g" / f"{stem}{suffix}.png", mask=True)
    scan = find_samples(tmp_path)
    assert [(s.image.name, s.mask) for s in scan.labelled] == [
        (f"{stem}.jpg", tmp_path / "masks" / "g" / f"{stem}{suffix}.png") for stem in ("a", "a_2", "b")]
    note, = scan.problems
    assert note.kind in NOTE_KINDS and str(note) == (
        f"paired by suffix: {tmp_path} (3 mask(s) named after their image plus the suffix '{suffix}' (as "
        f"a{suffix}.png for a.jpg) were paired with it)")


def test_the_exact_stem_wins_and_other_layouts_pair_by_suffix_too(tmp_path):
    write(tmp_path / "Data" / "cow" / "1.bmp")
    write(tmp_path / "Data" / "cow" / "2.bmp")
    write(tmp_path / "Data" / "cow" / "GroundTruth" / "1.png", mask=True)
    write(tmp_path / "Data" / "cow" / "GroundTruth" / "1_GT.png", mask=True)  # 1 has its own: this one is left
    write(tmp_path / "Data" / "cow" / "GroundTruth" / "2_GT.png", mask=True)
    scan = find_samples(tmp_path)
    assert scan.layout == "internet"
    assert [(s.image.name, s.mask.name, s.any_nonzero) for s in scan.samples] == [("1.bmp", "1.png", True),
                                                                                  ("2.bmp", "2_GT.png", True)]
    assert [(p.kind, p.path.name) for p in scan.problems] == [("paired by suffix", tmp_path.name),
                                                              ("mask without image", "1_GT.png")]


def test_a_flat_folder_with_its_suffixed_masks_inside(tmp_path):
    # was: photos/masks/ of a_mask.png was left out as a folder of masks none of which pairs
    for stem in ("a", "b"):
        write(tmp_path / "photos" / f"{stem}.jpg")
        write(tmp_path / "photos" / "masks" / f"{stem}_mask.png", mask=True)
    scan = find_samples(tmp_path / "photos")
    assert [(s.image.name, s.mask.name, s.group) for s in scan.samples] == [("a.jpg", "a_mask.png", "photos"),
                                                                            ("b.jpg", "b_mask.png", "photos")]
    assert [p.kind for p in scan.problems] == ["paired by suffix"]


def test_masks_of_another_case_or_folder_do_not_pair_by_suffix(tmp_path):
    write(tmp_path / "images" / "g" / "a.jpg")
    write(tmp_path / "masks" / "g" / "A_GT.png", mask=True)  # case differs
    write(tmp_path / "images" / "g" / "b.jpg")
    write(tmp_path / "masks" / "h" / "b_GT.png", mask=True)  # another group's folder
    scan = find_samples(tmp_path)
    assert scan.labelled == [] and "paired by suffix" not in {p.kind for p in scan.problems}


@pytest.mark.parametrize("layout, name", [("sbcoseg", "SBCoseg"), ("icoseg", "icoseg"), ("internet", "internet")])
def test_a_data_set_given_one_folder_too_high_says_did_you_mean(tmp_path, layout, name):
    # was: read in the folders layout without a word (masks taken for photos), or "image folder not found"
    make_synthetic_coseg(tmp_path / name, num_groups=2, images_per_group=2, size=32, layout=layout)
    hint = f"did you mean {tmp_path / name}? (it holds a data set in the {layout} layout)"
    scan = find_samples(tmp_path)
    assert scan.layout == "folders"
    assert str(scan.problems[0]) == (f"data set in a subfolder: {tmp_path / name} ({tmp_path}, which holds no image "
                                     f"itself, was read in the folders layout, each folder a group: {hint})")
    with pytest.raises(LayoutError, match="; " + hint.replace("?", r"\?").replace("(", r"\(").replace(")", r"\)")):
        find_samples(tmp_path, layout)
    assert find_samples(tmp_path / name).layout == layout


def test_two_data_sets_or_images_in_the_folder_give_no_hint(tmp_path):
    for name, layout in (("SBCoseg", "sbcoseg"), ("icoseg", "icoseg")):
        make_synthetic_coseg(tmp_path / "two" / name, num_groups=1, images_per_group=2, size=32, layout=layout)
    assert "data set in a subfolder" not in {p.kind for p in find_samples(tmp_path / "two").problems}
    make_synthetic_coseg(tmp_path / "one" / "SBCoseg", num_groups=1, images_per_group=2, size=32, layout="sbcoseg")
    write(tmp_path / "one" / "loose.jpg")
    assert "data set in a subfolder" not in {p.kind for p in find_samples(tmp_path / "one").problems}


@pytest.mark.parametrize("dtype", [np.int32, np.uint32])
def test_a_32_bit_integer_tiff_says_what_it_is(tmp_path, dtype):
    path = tmp_path / "deep.tif"
    assert cv2.imwrite(str(path), np.arange(20 * 24, dtype=dtype).reshape(20, 24))
    with pytest.raises(ImageReadError) as refused:
        read_image(path)
    assert str(refused.value) == (f"{path}: 32-bit integer image ({np.dtype(dtype).name}) is not supported: save it "
                                  "as 8- or 16-bit")


def test_one_sbcoseg_group_folder_keeps_its_subset_and_name(tmp_path):
    # was: group "00-star" without subset, where the whole data set (and a model trained on it) says "ECFB/00-star"
    root = make_synthetic_coseg(tmp_path / "SBCoseg", num_groups=2, images_per_group=2, size=32, layout="sbcoseg")
    whole = find_samples(root).group_subsets()
    for group, subset in whole.items():
        scan = find_samples(root / group)
        assert scan.layout == "sbcoseg" and scan.group_subsets() == {group: subset} and subset is not None
    write(tmp_path / "bird" / "a.jpg")  # a group folder outside any subset keeps its own name
    write(tmp_path / "bird" / "a.png", mask=True)
    assert find_samples(tmp_path / "bird").group_subsets() == {"bird": None}


def test_a_folder_of_images_with_their_suffixed_masks_beside_them(tmp_path):
    # was: read as a folder of photos, the masks among them, without a word
    from coseg.predict import scan_input

    for stem in ("a", "b"):
        write(tmp_path / "bird" / f"{stem}.jpg")
        write(tmp_path / "bird" / f"{stem}_mask.png", mask=True)
    for scan in (find_samples(tmp_path / "bird"), scan_input(tmp_path / "bird")):
        assert scan.layout == "sbcoseg" and [p.kind for p in scan.problems] == ["paired by suffix"]
        assert [(s.image.name, s.mask.name, s.group) for s in scan.samples] == [("a.jpg", "a_mask.png", "bird"),
                                                                                ("b.jpg", "b_mask.png", "bird")]


@pytest.mark.parametrize("layout", ["icoseg", "folders"])
def test_a_missing_mask_folder_is_an_error(tmp_path, layout):
    # was: icoseg read the images without masks without a word (folders: each image "without mask")
    root = make_synthetic_coseg(tmp_path / "data", num_groups=1, images_per_group=2, size=32, layout=layout)
    with pytest.raises(LayoutError, match=f"^mask folder not found: {tmp_path / 'nope'}$"):
        find_samples(root, layout, masks_root=tmp_path / "nope")


def test_msrc_class_folders_with_their_gt_suffixed_masks(tmp_path):
    # MSRC names its masks 1_1_s_GT.bmp; was: GT/ left out as masks none of which pairs, every image "without mask"
    for group in ("car", "cow"):
        for stem in ("1_1_s", "2_1_s"):
            write(tmp_path / group / f"{stem}.bmp")
            write(tmp_path / group / "GT" / f"{stem}_GT.bmp", mask=True)
    scan = find_samples(tmp_path)
    assert [(s.group, s.image.name, s.mask.relative_to(tmp_path).as_posix()) for s in scan.samples] == [
        (group, f"{stem}.bmp", f"{group}/GT/{stem}_GT.bmp") for group in ("car", "cow") for stem in ("1_1_s", "2_1_s")]
    assert [p.kind for p in scan.problems] == ["paired by suffix"]


def test_a_suffix_of_digits_pairs_no_mask(tmp_path):
    # a_2.png is more likely the mask of a missing image a_2.jpg than a's
    write(tmp_path / "images" / "g" / "a.jpg")
    write(tmp_path / "images" / "g" / "b.jpg")
    write(tmp_path / "masks" / "g" / "a_2.png", mask=True)
    write(tmp_path / "masks" / "g" / "b.png", mask=True)
    scan = find_samples(tmp_path)
    assert [(s.image.name, s.mask and s.mask.name) for s in scan.samples] == [("a.jpg", None), ("b.jpg", "b.png")]
    assert [p.kind for p in scan.problems] == ["image without mask", "mask without image"]


def test_png_photos_named_after_jpeg_photos_stay_photos(tmp_path):
    for stem in ("a", "b"):  # macOS names a copy "a copy.png": photos, not masks
        write(tmp_path / "trip" / f"{stem}.jpg")
        write(tmp_path / "trip" / f"{stem} copy.png")
    scan = find_samples(tmp_path / "trip")
    assert scan.layout == "folders" and len(scan.samples) == 4 and scan.problems == []
