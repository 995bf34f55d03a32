"""Scanning a user's folders that hold a folder nobody may enter (``chmod 000``, ``lost+found`` on a volume)."""
import os
from pathlib import Path

import pytest

from coseg.data import find_samples, make_synthetic_coseg


def lock(monkeypatch, locked: Path) -> None:
    """Make ``locked`` behave as a ``chmod 000`` folder does for a user other than root (root enters every folder):
    it cannot be listed, and nothing inside it can be looked at, not even whether ``locked/name`` exists."""
    scandir, stat = os.scandir, os.stat

    def refused(path) -> PermissionError:
        return PermissionError(13, "Permission denied", os.fspath(path))

    def listing(path="."):
        if Path(path) == locked:
            raise refused(path)
        return scandir(path)

    def looking(path, *args, **kwargs):
        if locked in Path(os.fspath(path)).parents:
            raise refused(path)
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", listing)
    monkeypatch.setattr(os, "stat", looking)


@pytest.mark.parametrize("layout", ["icoseg", "internet", "sbcoseg", "folders"])
def test_a_locked_folder_at_the_top_does_not_stop_layout_detection(tmp_path, monkeypatch, layout):
    """Detection looks for ``GroundTruth``, ``images``... inside each top folder: a locked one used to raise
    PermissionError out of ``find_samples`` (so ``coseg predict/evaluate/train`` failed on the whole folder)."""
    root = make_synthetic_coseg(tmp_path, num_groups=2, images_per_group=2, size=32, layout=layout)
    (root / "locked").mkdir()
    lock(monkeypatch, root / "locked")
    scan = find_samples(root)
    assert scan.layout == layout and len(scan.labelled) == 4


def test_a_locked_group_among_plain_folders_is_reported(tmp_path, monkeypatch):
    """A flat folder of groups without masks (what ``coseg predict`` reads): the locked group is named as skipped."""
    root = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=2, size=32, layout="folders")
    photos = root / "images"
    (photos / "locked").mkdir()
    lock(monkeypatch, photos / "locked")
    scan = find_samples(photos)
    assert scan.layout == "folders" and len(scan.samples) == 4
    assert [(p.kind, p.path, p.detail) for p in scan.problems] == [
        ("skipped folder", photos / "locked", "Permission denied")]
