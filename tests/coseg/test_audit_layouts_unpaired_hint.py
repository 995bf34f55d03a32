"""Masks kept in one flat folder for images in group folders (``images/g/a.jpg``, ``masks/a.png``) pair with nothing,
since a mask pairs with the image of its stem in the same relative folder; each unpaired file names the unpaired
file of its stem in the other folder, so the user sees why "the image of its stem" did not take its mask. A stem
that only repeats across groups (``img000`` in every group) gets no such note."""
from __future__ import annotations

import shutil
from pathlib import Path

from coseg.data import find_samples, make_synthetic_coseg


def test_flat_masks_of_grouped_images_name_the_image_of_their_stem(tmp_path):
    root = make_synthetic_coseg(tmp_path / "data", num_groups=1, images_per_group=2, size=32, layout="folders")
    for mask in sorted((root / "masks" / "00-star").iterdir()):
        mask.rename(root / "masks" / mask.name)
    scan = find_samples(root)
    assert scan.labelled == []
    notes = {(p.kind, p.path.name): p.detail for p in scan.problems}
    assert set(notes) == {(kind, f"img00{i}.{suffix}") for i in range(2)
                          for kind, suffix in (("image without mask", "jpg"), ("mask without image", "png"))}
    image, mask = root / "images" / "00-star" / "img000.jpg", root / "masks" / "img000.png"
    assert notes["image without mask", "img000.jpg"].startswith(f"the mask {mask}, also unpaired, has its stem in "
                                                                "another folder")
    assert notes["mask without image", "img000.png"].startswith(f"the image {image}, also unpaired, has its stem in "
                                                                "another folder")


def test_a_stem_repeated_in_another_group_is_no_hint(tmp_path):
    root = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=2, size=32, layout="folders")
    (root / "masks" / "00-star" / "img000.png").unlink()  # 01-ellipse/img000 keeps its own mask
    shutil.copy(root / "masks" / "01-ellipse" / "img001.png", root / "masks" / "01-ellipse" / "stray.png")
    scan = find_samples(root)
    assert [(p.kind, p.path.relative_to(root), p.detail) for p in scan.problems] == [
        ("image without mask", Path("images/00-star/img000.jpg"), ""),
        ("mask without image", Path("masks/01-ellipse/stray.png"), "")]
    assert len(scan.labelled) == 3
