"""coseg.data.layouts: every layout on generated fixtures, auto detection, odd names, problems reported."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from coseg.data import LAYOUTS, LayoutError, Sample, SBCOSEG_SUBSETS, detect_layout, find_samples, make_synthetic_coseg
from coseg.data.io import read_pair
from tests.coseg.files import left_red_image, write_rgb

WEIRD_GROUPS = ["two words", "a, b", "it's \"quoted\"", "wow!", os.fsdecode(b"caf\xc3\xa9 \xff\xfe bytes")]


def test_registry_lists_all_layouts():
    assert LAYOUTS.names() == ["folders", "icoseg", "internet", "sbcoseg"]
    with pytest.raises(KeyError, match="valid names: folders, icoseg, internet, sbcoseg"):
        LAYOUTS.get("voc")


@pytest.mark.parametrize("layout", ["icoseg", "internet", "sbcoseg", "folders"])
def test_each_layout_found_explicitly_and_by_auto(tmp_path, layout):
    root = make_synthetic_coseg(tmp_path / "d", num_groups=3, images_per_group=4, size=32, layout=layout)
    assert detect_layout(root) == layout
    scan = find_samples(root)
    assert scan.layout == layout and scan.problems == []
    assert find_samples(root, layout).samples == scan.samples
    assert len(scan.samples) == 12 and len(scan.labelled) == 12 and len(scan.groups) == 3
    assert scan.samples == sorted(scan.samples, key=lambda s: (s.group, s.image))
    for s in scan.samples:
        assert s.mask.stem == s.image.stem and s.image.suffix == ".jpg" and s.mask.suffix == ".png"
        assert s.group.endswith(s.image.parent.name)
        assert s.any_nonzero is (layout == "internet")
        assert (s.subset is not None) is (layout == "sbcoseg")


def test_sbcoseg_subsets_and_flat_group_folders(tmp_path):
    root = make_synthetic_coseg(tmp_path, num_groups=6, images_per_group=2, size=32, layout="sbcoseg")
    shutil.move(str(root / "ECFB" / "00-star"), str(root / "flat group"))
    scan = find_samples(root, "sbcoseg")
    subsets = scan.group_subsets()
    assert subsets["flat group"] is None
    assert subsets["TR/01-ellipse"] == "TR" and subsets["ECFB/05-star"] == "ECFB"
    assert sorted({s for s in subsets.values() if s}) == sorted(SBCOSEG_SUBSETS)
    assert len(scan.samples) == 12


def test_one_sbcoseg_group_folder_given_itself_is_one_group_with_its_masks(tmp_path):
    from coseg.predict import scan_input

    root = make_synthetic_coseg(tmp_path, num_groups=2, images_per_group=2, size=32, layout="sbcoseg")
    group = root / "ECFB" / "00-star"
    assert detect_layout(group) == "sbcoseg"
    scan = find_samples(group)
    assert [(s.image.name, s.mask.name, s.group) for s in scan.labelled] == [
        ("img000.jpg", "img000.png", "ECFB/00-star"), ("img001.jpg", "img001.png", "ECFB/00-star")]
    assert scan.problems == [] and len(scan.samples) == 2
    assert [s.image.name for s in scan_input(group).samples] == ["img000.jpg", "img001.jpg"]  # masks not predicted


def test_internet_noise_images_keep_empty_masks(tmp_path):
    root = make_synthetic_coseg(tmp_path, num_groups=2, images_per_group=3, size=32, layout="internet",
                                empty_per_group=1)
    scan = find_samples(root / "Data")  # the Data folder itself works too
    assert scan.layout == "internet" and len(scan.labelled) == 6
    empty = [s for s in scan.samples if not read_pair(s.image, s.mask, any_nonzero=True)[1].any()]
    assert [s.image.name for s in empty] == ["img002.jpg", "img002.jpg"]


@pytest.mark.parametrize("layout", ["icoseg", "internet", "sbcoseg", "folders"])
def test_weird_group_names(tmp_path, layout):
    root = make_synthetic_coseg(tmp_path, num_groups=5, images_per_group=2, size=32, layout=layout,
                                group_names=WEIRD_GROUPS)
    scan = find_samples(root)
    names = {g.split("/")[-1] for g in scan.groups}
    assert names == set(WEIRD_GROUPS) and len(scan.samples) == 10
    image, mask = read_pair(scan.samples[-1].image, scan.samples[-1].mask)
    assert image.shape[:2] == mask.shape == (32, 32)


def test_unpaired_files_are_reported_not_dropped(tmp_path):
    root = make_synthetic_coseg(tmp_path, num_groups=2, images_per_group=3, size=32)
    (root / "ground_truth" / "00-star" / "img001.png").unlink()
    (root / "images" / "01-ellipse" / "img002.jpg").unlink()
    scan = find_samples(root)
    assert [(p.kind, p.path.name) for p in scan.problems] == [("mask without image", "img002.png"),
                                                               ("image without mask", "img001.jpg")]
    assert str(scan.problems[1]) == f"image without mask: {root}/images/00-star/img001.jpg"
    unlabelled = [s for s in scan.samples if s.mask is None]
    assert [s.image.name for s in unlabelled] == ["img001.jpg"] and len(scan.labelled) == 4


def test_hidden_and_non_image_files_ignored(tmp_path):
    root = make_synthetic_coseg(tmp_path, num_groups=1, images_per_group=2, size=32)
    group = root / "images" / "00-star"
    (group / ".DS_Store").write_bytes(b"\0\0")
    (group / "._img000.jpg").write_bytes(b"apple double")
    (group / "notes.txt").write_text("hello")
    (group / "Thumbs.db").write_bytes(b"x")
    shutil.copytree(group, root / "images" / ".hidden group")
    shutil.copytree(group, root / "images" / "__MACOSX")
    scan = find_samples(root)
    assert scan.groups == ["00-star"] and len(scan.samples) == 2 and scan.problems == []


def test_symlink_loop_terminates_and_is_reported(tmp_path):
    root = make_synthetic_coseg(tmp_path, num_groups=1, images_per_group=2, size=32, layout="folders")
    os.symlink("..", root / "images" / "00-star" / "loop")
    scan = find_samples(root, "folders")
    assert len(scan.samples) == 2
    assert [p.kind for p in scan.problems] == ["skipped folder"] and scan.problems[0].path.name == "loop"


def test_symlinked_group_folder_and_broken_link(tmp_path):
    root = make_synthetic_coseg(tmp_path / "d", num_groups=1, images_per_group=2, size=32)
    elsewhere = make_synthetic_coseg(tmp_path / "other", num_groups=1, images_per_group=3, size=32, seed=1,
                                     group_names=["linked"])
    os.symlink(elsewhere / "images" / "linked", root / "images" / "linked")
    os.symlink(elsewhere / "ground_truth" / "linked", root / "ground_truth" / "linked")
    os.symlink(tmp_path / "missing.jpg", root / "images" / "00-star" / "gone.jpg")
    scan = find_samples(root)
    assert scan.groups == ["00-star", "linked"] and len(scan.labelled) == 5
    assert [(p.kind, p.path.name) for p in scan.problems] == [("broken link", "gone.jpg")]


def test_folders_layout_flat_nested_and_without_masks(tmp_path):
    flat = tmp_path / "my photos"
    for name in ("b.jpg", "a.png", "c.JPEG"):
        write_rgb(flat / name, left_red_image())
    write_rgb(flat / "sub" / "deeper" / "d.jpg", left_red_image())
    scan = find_samples(flat)
    assert scan.layout == "folders" and scan.problems == []
    assert [(s.group, s.image.name, s.mask) for s in scan.samples] == [
        ("my photos", "a.png", None), ("my photos", "b.jpg", None), ("my photos", "c.JPEG", None),
        ("sub/deeper", "d.jpg", None)]


def test_folders_layout_loose_images_beside_a_subfolder_of_their_group_name(tmp_path):
    """``images/{a,b}.jpg`` would be group 'images', as would ``images/images/a.jpg``: the loose images are
    reported and left out rather than scored (and saved) as one group with it; with masks and without."""
    root = tmp_path / "coll"
    for name in ("a", "b", "images/a"):
        write_rgb(root / "images" / f"{name}.jpg", left_red_image())
        write_rgb(root / "masks" / f"{name}.png", left_red_image())
    scan = find_samples(root, "folders")
    inner = root / "images" / "images"
    assert [(s.group, s.image) for s in scan.samples] == [("images", inner / "a.jpg")]
    assert [(p.kind, p.path) for p in scan.problems] == [
        ("outside any group", root / "images" / name) for name in ("a.jpg", "b.jpg")]
    assert f"the group of the folder {inner}" in scan.problems[0].detail

    flat = tmp_path / "photos"
    write_rgb(flat / "c.jpg", left_red_image())
    write_rgb(flat / "photos" / "deeper" / "d.jpg", left_red_image())  # group 'photos/deeper': no clash
    assert [s.group for s in find_samples(flat, "folders").samples] == ["photos", "photos/deeper"]
    write_rgb(flat / "photos" / "e.jpg", left_red_image())
    scan = find_samples(flat, "folders")
    assert [(s.group, s.image.name) for s in scan.samples] == [("photos", "e.jpg"), ("photos/deeper", "d.jpg")]
    assert [(p.kind, p.path) for p in scan.problems] == [("outside any group", flat / "c.jpg")]


def test_folders_layout_with_explicit_masks_root(tmp_path):
    root = make_synthetic_coseg(tmp_path / "d", num_groups=2, images_per_group=2, size=32, layout="folders")
    shutil.move(str(root / "masks"), str(tmp_path / "elsewhere"))
    assert find_samples(root / "images").labelled == []
    scan = find_samples(root / "images", "folders", masks_root=tmp_path / "elsewhere")
    assert len(scan.labelled) == 4 and scan.problems == []


@pytest.mark.parametrize("images, masks", [("Images", "Masks"), ("images", "GT"), ("IMAGES", "Annotations"),
                                           ("images", "GroundTruth")])
def test_folders_layout_names_its_folders_in_any_case(tmp_path, images, masks):
    root = make_synthetic_coseg(tmp_path / "d", num_groups=2, images_per_group=2, size=32, layout="folders")
    expected = [(s.group, s.image.name, s.mask.name) for s in find_samples(root).samples]
    shutil.move(str(root / "images"), str(root / f"{images}_"))
    shutil.move(str(root / f"{images}_"), str(root / images))
    shutil.move(str(root / "masks"), str(root / masks))
    scan = find_samples(root)
    assert scan.layout == "folders" and scan.problems == []
    assert [(s.group, s.image.name, s.mask.name) for s in scan.samples] == expected
    assert {s.mask.parent.parent.name for s in scan.samples} == {masks}


def test_folders_layout_reports_what_lies_beside_its_images_folder(tmp_path):
    """With ``root/images``, folders and images beside it are not samples but reported, saying how to use them;
    the mask folder in use, other files and folders without images are not."""
    root = make_synthetic_coseg(tmp_path / "photos", num_groups=2, images_per_group=2, size=32, layout="folders")
    expected = find_samples(root).samples
    (root / "splits.json").write_text("{}")
    (root / "README").write_text("a data set")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("label more")
    write_rgb(root / "cats" / "indoor" / "c.jpg", left_red_image())
    write_rgb(root / "dogs" / "d.png", left_red_image())
    write_rgb(root / ".cache" / "e.jpg", left_red_image())
    write_rgb(root / "stray.jpg", left_red_image())
    scan = find_samples(root)
    assert scan.samples == expected
    assert [(p.kind, p.path.name) for p in scan.problems] == [
        ("skipped folder", "cats"), ("skipped folder", "dogs"), ("outside any group", "stray.jpg")]
    assert str(scan.problems[0]) == (f"skipped folder: {root}/cats (1 image(s) outside {root}/images, which holds "
                                     "this layout's images; to use them, pass this folder itself or move it under "
                                     "images/)")
    assert "move it under images/" in scan.problems[2].detail
    shutil.move(str(root / "masks"), str(root / "annotations"))
    scan = find_samples(root, "folders", masks_root=root / "annotations")
    assert [s.image for s in scan.samples] == [s.image for s in expected] and len(scan.labelled) == 4
    assert [p.path.name for p in scan.problems] == ["cats", "dogs", "stray.jpg"]


def test_folders_layout_with_an_empty_images_folder_names_its_neighbours(tmp_path):
    (tmp_path / "photos" / "images").mkdir(parents=True)
    write_rgb(tmp_path / "photos" / "cats" / "c.jpg", left_red_image())
    with pytest.raises(LayoutError, match="no images found .* first: skipped folder: .*photos/cats .*outside"):
        find_samples(tmp_path / "photos")


@pytest.mark.parametrize("layout", ["icoseg", "internet", "sbcoseg", "folders"])
def test_images_sharing_a_stem_are_ambiguous_where_masks_exist(tmp_path, layout):
    """``a.jpg`` and ``a.png`` beside mask ``a.png``: neither is paired with it (one would get the other's mask);
    both are reported and left out. In sbcoseg the PNG beside ``a.jpg`` is its mask: ``a.jpeg`` makes the clash."""
    root = make_synthetic_coseg(tmp_path, num_groups=2, images_per_group=2, size=32, layout=layout)
    image = find_samples(root, layout).samples[0].image
    twin = image.with_suffix(".jpeg" if layout == "sbcoseg" else ".png")
    shutil.copy(image, twin)
    scan = find_samples(root, layout)
    assert [(p.kind, p.path, p.detail) for p in scan.problems] == [
        ("ambiguous image", path, "2 images share the stem 'img000'") for path in sorted([image, twin])]
    assert len(scan.samples) == 3 and image not in {s.image for s in scan.samples} and len(scan.labelled) == 3


def test_images_sharing_a_stem_are_kept_without_masks(tmp_path):
    for name in ("a.jpg", "a.png"):
        write_rgb(tmp_path / "photos" / name, left_red_image())
    scan = find_samples(tmp_path / "photos", "folders")
    assert [s.image.name for s in scan.samples] == ["a.jpg", "a.png"] and scan.problems == []


def test_ambiguous_masks_and_images_outside_groups(tmp_path):
    root = make_synthetic_coseg(tmp_path, num_groups=1, images_per_group=2, size=32)
    shutil.copy(root / "ground_truth" / "00-star" / "img000.png", root / "ground_truth" / "00-star" / "img000.bmp")
    write_rgb(root / "images" / "stray.jpg", left_red_image())
    scan = find_samples(root)
    kinds = sorted((p.kind, p.path.name) for p in scan.problems)
    assert kinds == [("ambiguous mask", "img000.bmp"), ("ambiguous mask", "img000.png"),
                     ("image without mask", "img000.jpg"), ("outside any group", "stray.jpg")]
    assert [s.image.name for s in scan.samples] == ["img000.jpg", "img001.jpg"]


def test_empty_and_missing_folders_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="no images found under .*empty"):
        find_samples(tmp_path / "empty")
    (tmp_path / "only text").mkdir()
    (tmp_path / "only text" / "a.txt").write_text("x")
    with pytest.raises(LayoutError, match="no images found"):
        find_samples(tmp_path / "only text", "folders")
    with pytest.raises(LayoutError, match="data folder not found: .*absent"):
        find_samples(tmp_path / "absent")
    with pytest.raises(LayoutError, match=r"beside the images: a separate mask folder \(--masks, masks_root\) "
                                          r"does not apply"):
        find_samples(make_synthetic_coseg(tmp_path / "i", 1, 1, 16, layout="internet"), masks_root=tmp_path)


def test_samples_are_hashable_values():
    a = Sample(image=Path("x.jpg"), mask=None, group="g")
    assert {a: 1}[Sample(Path("x.jpg"), None, "g")] == 1
    assert a != Sample(Path("x.jpg"), None, "h")


@pytest.mark.parametrize("layout", ["auto", "internet"])
def test_internet_class_folder_passed_itself(tmp_path, layout):
    """``Data/Airplane100`` itself, as papers evaluate each subset: one group named after it, its images paired with
    ``GroundTruth/`` (noise images keep their empty masks); the masks are not taken for images."""
    root = make_synthetic_coseg(tmp_path, num_groups=2, images_per_group=3, size=32, layout="internet",
                                group_names=["Airplane", "Airplane100"], empty_per_group=1)
    folder = root / "Data" / "Airplane100"
    scan = find_samples(folder, layout)
    assert scan.layout == "internet" and scan.problems == [] and scan.groups == ["Airplane100"]
    assert [(s.image.parent, s.mask.parent, s.any_nonzero) for s in scan.samples] == [
        (folder, folder / "GroundTruth", True)] * 3
    write_rgb(tmp_path / "photos" / "images" / "a" / "x.jpg", left_red_image())  # folders layout, masks in
    write_rgb(tmp_path / "photos" / "GroundTruth" / "a" / "x.png", left_red_image())  # GroundTruth/, a stray
    write_rgb(tmp_path / "photos" / "stray.jpg", left_red_image())  # image beside: not one Internet class
    assert detect_layout(tmp_path / "photos") == "folders"


@pytest.mark.parametrize("layout", ["icoseg", "internet", "sbcoseg", "folders"])
def test_link_loops_are_reported_not_raised(tmp_path, layout):
    """A link to itself cannot be followed (ELOOP): reported as a broken link, in a group and at the top, where the
    layout is detected."""
    root = make_synthetic_coseg(tmp_path, num_groups=2, images_per_group=2, size=32, layout=layout)
    group = find_samples(root, layout).samples[0].image.parent
    os.symlink("self.jpg", group / "self.jpg")
    os.symlink("top", root / "top")
    scan = find_samples(root)
    assert scan.layout == layout and len(scan.labelled) == 4
    assert {p.kind for p in scan.problems} == {"broken link"}
    assert group / "self.jpg" in {p.path for p in scan.problems}


@pytest.mark.parametrize("layout, locked, reported", [
    ("icoseg", "lost+found", False), ("internet", "Data/lost+found", True), ("sbcoseg", "lost+found", True),
    ("folders", "lost+found", False)])
def test_unreadable_folders_are_reported_not_raised(tmp_path, monkeypatch, layout, locked, reported):
    """A folder that cannot be listed (``lost+found`` on a data volume; simulated, since root reads everything) is
    reported as skipped where the layout would read it, and does not stop detection or the scan."""
    root = make_synthetic_coseg(tmp_path, num_groups=2, images_per_group=2, size=32, layout=layout)
    (root / locked).mkdir()
    scandir = os.scandir

    def refusing(path="."):
        if Path(path) == root / locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    scan = find_samples(root)
    assert scan.layout == layout and len(scan.labelled) == 4
    expected = [("skipped folder", root / locked, "Permission denied")] if reported else []
    assert [(p.kind, p.path, p.detail) for p in scan.problems] == expected


def test_sbcoseg_images_directly_in_a_subset_folder_are_reported(tmp_path):
    root = make_synthetic_coseg(tmp_path, num_groups=5, images_per_group=2, size=32, layout="sbcoseg")
    shutil.copy(root / "ECFB" / "00-star" / "img000.jpg", root / "ECFB" / "loose.jpg")
    scan = find_samples(root)
    assert len(scan.samples) == 10
    assert [(p.kind, p.path) for p in scan.problems] == [("outside any group", root / "ECFB" / "loose.jpg")]
