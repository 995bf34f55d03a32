"""A user's photos where a JPEG and a PNG photo share a name (``a.jpg``, ``a.png``) are no SBCoseg data set (JPEG
images, PNG masks beside them): `coseg predict` names the clash and says nothing of a "data set in a subfolder". Was:
a group of such photos among others gave a "did you mean p_in/g1? (sbcoseg)" line, and a folder of mostly JPEG
photos was read as SBCoseg, its PNG photo taken for a mask and left out without a word. The PNGs paired must be masks
(two-level images) for the layout and the hint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from coseg.data import detect_layout, find_samples, make_synthetic_coseg
from coseg.predict import predict_folder
from tests.coseg.files import half_mask, write_cv2, write_rgb
from tests.coseg.pipeline_fixtures import ConstantModel

CPU = torch.device("cpu")


def photo(path: Path, seed: int) -> Path:
    return write_rgb(path, np.random.default_rng(seed).integers(0, 255, (20, 30, 3), dtype=np.uint8))


def predicted(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))


def test_a_group_with_a_jpeg_and_a_png_photo_of_one_name_gives_no_data_set_hint(tmp_path):
    root = tmp_path / "p_in"
    photo(root / "g1" / "a.jpg", 0)
    photo(root / "g1" / "a.png", 1)
    for i in range(3):
        photo(root / "g2" / f"p{i}.png", 2 + i)
    report = predict_folder(ConstantModel(0.8), 32, root, tmp_path / "out", CPU, progress=False)
    assert [reason for _, reason in report.skipped] == [
        f"{root / 'g1' / name}: images a.jpg, a.png would write the same mask a.png (names compared ignoring case); "
        "rename all but one" for name in ("a.jpg", "a.png")]
    assert report.written == 3 and predicted(tmp_path / "out") == ["g2/p0.png", "g2/p1.png", "g2/p2.png"]


@pytest.mark.parametrize("given", ["photos", "photos/trip"])
def test_mostly_jpeg_photos_with_one_png_of_a_jpeg_name_are_all_predicted_or_listed(tmp_path, given):
    trip = tmp_path / "photos" / "trip"
    for i, name in enumerate(("a.jpg", "a.png", "b.jpg", "c.jpg")):
        photo(trip / name, i)
    root = tmp_path / given
    assert detect_layout(root) == "folders"
    report = predict_folder(ConstantModel(0.8), 32, root, tmp_path / "out", CPU, progress=False)
    assert [file for file, _ in report.skipped] == [str(trip / "a.jpg"), str(trip / "a.png")]
    assert report.written == 2


def test_jpeg_images_with_their_png_masks_are_still_sbcoseg(tmp_path):
    for name in ("mine", "X/mine"):
        group = tmp_path / name / "g"
        for i in range(2):
            photo(group / f"{i}.jpg", i)
            write_cv2(group / f"{i}.png", half_mask())
    assert detect_layout(tmp_path / "mine") == "sbcoseg" and len(find_samples(tmp_path / "mine").labelled) == 2
    make_synthetic_coseg(tmp_path / "one" / "SBCoseg", num_groups=1, images_per_group=2, size=32, layout="sbcoseg")
    for root in (tmp_path / "X", tmp_path / "one"):
        kinds = [p.kind for p in find_samples(root).problems]
        assert kinds[0] == "data set in a subfolder", kinds
