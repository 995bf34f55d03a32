"""coseg.data.layouts on data sets users bring: images a layout does not read are listed, never dropped without a
word, and a folder of photos is not taken for SBCoseg because two of its photos share a stem."""
from __future__ import annotations

from pathlib import Path

import pytest

from coseg.data import detect_layout, find_samples, make_synthetic_coseg
from tests.coseg.files import half_mask, left_red_image, write_cv2, write_rgb


def _problems(scan, root: Path) -> list[tuple[str, str]]:
    return [(p.kind, p.path.relative_to(root).as_posix()) for p in scan.problems]


def test_icoseg_lists_the_images_beside_its_images_folder(tmp_path):
    """Like the folders layout, icoseg names the folders holding images and the images beside ``images/`` (a mask
    folder of another name included) instead of leaving them out without a word."""
    root = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=2, size=32, layout="icoseg")
    expected = find_samples(root, "icoseg").samples
    write_rgb(root / "more_photos" / "c" / "c.jpg", left_red_image())
    write_rgb(root / "stray.jpg", left_red_image())
    (root / "splits.json").write_text("{}")
    for layout in ("auto", "icoseg"):
        scan = find_samples(root, layout)
        assert scan.layout == "icoseg" and scan.samples == expected
        assert _problems(scan, root) == [("skipped folder", "more_photos"), ("outside any group", "stray.jpg")]
        assert "1 image(s) outside" in scan.problems[0].detail and "move it under images/" in scan.problems[1].detail


def test_internet_lists_subfolders_of_a_class_and_folders_beside_data(tmp_path):
    root = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=2, size=32, layout="internet")
    expected = find_samples(root, "internet").samples
    group = expected[0].image.parent
    write_rgb(group / "extra" / "e.jpg", left_red_image())
    write_rgb(root / "Other" / "o.jpg", left_red_image())
    scan = find_samples(root)
    assert scan.layout == "internet" and scan.samples == expected
    assert _problems(scan, root) == [("skipped folder", (group / "extra").relative_to(root).as_posix()),
                                     ("skipped folder", "Other")]
    assert "subfolder of the group" in scan.problems[0].detail and "move it under Data/" in scan.problems[1].detail


def test_sbcoseg_lists_folders_nested_in_a_group(tmp_path):
    """SBCoseg groups are single folders: pairs one level deeper (``ECFB/bird/sub``, ``plain/deeper``) are named."""
    root = tmp_path / "data"
    for folder in ("ECFB/bird", "ECFB/bird/sub", "plain", "plain/deeper"):
        write_rgb(root / folder / "a.jpg", left_red_image())
        write_cv2(root / folder / "a.png", half_mask())
    scan = find_samples(root)
    assert scan.layout == "sbcoseg" and scan.groups == ["ECFB/bird", "plain"]
    assert _problems(scan, root) == [("skipped folder", "ECFB/bird/sub"), ("skipped folder", "plain/deeper")]
    assert "2 image file(s) in a subfolder of the group 'ECFB/bird'" in scan.problems[0].detail


def test_photos_sharing_one_stem_do_not_make_a_folder_sbcoseg(tmp_path):
    """A folder of JPEG and PNG photos where one JPEG and one PNG share a stem is not SBCoseg (its PNG photos would
    be taken for masks and not predicted): the folders layout reads every photo and names the clash."""
    root = tmp_path / "photos"
    for name in ("trip/a.jpg", "trip/a.png", "trip/b.png", "trip/c.jpg", "trip/d.png", "home/x.jpg", "home/y.png"):
        write_rgb(root / name, left_red_image())
    assert detect_layout(root) == "folders"
    scan = find_samples(root)
    assert len(scan.samples) == 7 and all(s.mask is None for s in scan.samples)
    sbcoseg = make_synthetic_coseg(tmp_path / "sb", num_groups=5, images_per_group=2, size=32, layout="sbcoseg")
    flat = tmp_path / "flat"  # without subset folders, one PNG mask missing its image
    for i in range(3):
        write_rgb(flat / "g" / f"{i}.jpg", left_red_image())
        write_cv2(flat / "g" / f"{i}.png", half_mask())
    write_cv2(flat / "g" / "orphan.png", half_mask())
    assert detect_layout(sbcoseg) == detect_layout(flat) == "sbcoseg"


@pytest.mark.parametrize("layout", ["icoseg", "internet", "sbcoseg", "folders"])
def test_generated_layouts_report_nothing(tmp_path, layout):
    """The new reports find nothing to say about a data set in its own layout."""
    root = make_synthetic_coseg(tmp_path / "data", num_groups=3, images_per_group=2, size=32, layout=layout)
    (root / "splits.json").write_text("{}")
    scan = find_samples(root)
    assert scan.layout == layout and scan.problems == []
