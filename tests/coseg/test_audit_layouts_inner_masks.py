"""A folder of images holding its masks in a subfolder (``photos/*.jpg`` + ``photos/masks/*.png``, or groups
``photos/<group>/`` + ``photos/masks/<group>/``) is a labelled data set: its masks are paired with the images, not
taken for a group of images to train on, score or predict. A subfolder of photos that happens to be named like a mask
folder, whose files pair with no image, stays a group; one of masks that pair with no image is left out and named."""
from __future__ import annotations

import shutil
from pathlib import Path

from coseg.data import find_samples, make_synthetic_coseg
from coseg.predict import scan_input


def flat_with_inner_masks(tmp_path: Path, masks: str = "masks") -> Path:
    """``photos/img00i.jpg`` with ``photos/<masks>/img00i.png``, from one generated group."""
    source = make_synthetic_coseg(tmp_path / "src", num_groups=1, images_per_group=3, size=32, layout="folders")
    photos = tmp_path / "photos"
    shutil.copytree(source / "images" / "00-star", photos)
    shutil.copytree(source / "masks" / "00-star", photos / masks)
    return photos


def test_a_mask_folder_inside_a_flat_image_folder_holds_its_masks(tmp_path):
    photos = flat_with_inner_masks(tmp_path, masks="GT")
    scan = find_samples(photos)
    assert scan.layout == "folders" and scan.problems == []
    assert [(s.image.name, s.mask, s.group) for s in scan.samples] == [
        (f"img00{i}.jpg", photos / "GT" / f"img00{i}.png", "photos") for i in range(3)]
    assert [s.image.name for s in scan_input(photos).samples] == ["img000.jpg", "img001.jpg", "img002.jpg"]


def test_groups_with_their_masks_in_a_mask_folder_beside_them(tmp_path):
    source = make_synthetic_coseg(tmp_path / "src", num_groups=2, images_per_group=2, size=32, layout="folders")
    root = tmp_path / "data"
    shutil.copytree(source / "images", root)
    shutil.copytree(source / "masks", root / "masks")
    scan = find_samples(root)
    assert scan.groups == ["00-star", "01-ellipse"] and len(scan.labelled) == 4 and scan.problems == []
    assert all(s.mask == root / "masks" / s.group / f"{s.image.stem}.png" for s in scan.samples)


def test_a_folder_of_photos_named_like_masks_stays_a_group(tmp_path):
    photos = flat_with_inner_masks(tmp_path, masks="labels")
    for mask in (photos / "labels").iterdir():  # photos of labels, pairing with no image
        mask.unlink()
        shutil.copy(photos / f"{mask.stem}.jpg", mask.with_name(f"label {mask.stem}.png"))
    scan = find_samples(photos)
    assert scan.labelled == [] and scan.problems == []
    assert scan.groups == ["labels", "photos"] and len(scan.samples) == 6


def test_a_folder_of_masks_none_of_which_pairs_is_left_out_and_named(tmp_path):
    # was: predict took photos/masks/ for a group of photos and wrote masks of the masks
    photos = flat_with_inner_masks(tmp_path)
    for mask in (photos / "masks").iterdir():
        mask.rename(mask.with_name(f"mask_{mask.stem}.png"))  # (img000_mask.png pairs by its suffix)
    for scan in (find_samples(photos), scan_input(photos)):
        assert [(s.image.name, s.mask, s.group) for s in scan.samples] == [
            (f"img00{i}.jpg", None, "photos") for i in range(3)]
        assert [str(p) for p in scan.problems] == [
            f"skipped folder: {photos / 'masks'} (3 mask(s), none named like an image of {photos}; to use them, rename "
            "them: a mask pairs with the image of its name and folder (a.jpg with masks/a.png))"]
