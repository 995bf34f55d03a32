"""An export run again reused an image's embedding when its path, modification time and size were unchanged: a file
replaced by another of the same size that kept the old modification time (cp -p, rsync -t, a restored backup) kept
the stale embedding (audit s17). The inode and change time tell such a file now, and its bytes tell one that is
unchanged but was moved with its folder (another machine, a restored copy): it is not embedded again."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import apps.retrieval.export as export_module
from apps.retrieval.export import STAMP_COLUMNS, STAMPS, export_folder
from tests.apps.retrieval_files import tiny_image
from tests.apps.retrieval_runs import tiny_set
from tests.apps.test_retrieval_export import manifest
from tests.apps.test_retrieval_export_incremental import Embedded
from tests.apps.test_retrieval_user_outputs import _model


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """4 class folders of 2 images, and 2 bitmaps of one size (so of one byte size) in class0."""
    root = tiny_set(tmp_path / "images", per_class=2)
    (root / "splits.json").unlink()
    for seed, name in ((1, "a.bmp"), (2, "b.bmp")):
        tiny_image(root / "class0" / name, seed=seed)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return _model(tmp_path_factory.mktemp("model") / "best.safetensors", seed=0)


def assert_same_export(a: Path, b: Path) -> None:
    assert manifest(a) == manifest(b)
    np.testing.assert_allclose(np.load(a / "embeddings.npy"), np.load(b / "embeddings.npy"), rtol=1e-5, atol=1e-6)


def put_back(path: Path, stat: os.stat_result) -> None:
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize("how", ["in place", "renamed over"])  # cp -p writes into the file; rsync -t renames one over
def test_a_file_replaced_by_one_of_its_size_and_time_is_embedded_again(collection: Path, checkpoint: Path,
                                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       how: str) -> None:
    out = tmp_path / "export"
    export_folder(checkpoint, collection, out)
    a, b = collection / "class0" / "a.bmp", collection / "class0" / "b.bmp"
    before = os.stat(a)
    if how == "in place":
        shutil.copyfile(b, a)
    else:
        shutil.copyfile(b, tmp_path / "b.bmp")
        os.replace(tmp_path / "b.bmp", a)
    put_back(a, before)
    after = os.stat(a)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    embedded = Embedded()
    monkeypatch.setattr(export_module, "embed_shard", embedded)
    report = export_folder(checkpoint, collection, out)
    assert embedded.images == ["class0/a.bmp"] and report.images_reused == report.images - 1
    fresh = tmp_path / "fresh"
    export_folder(checkpoint, collection, fresh)
    assert_same_export(out, fresh)
    rows = {entry["path"]: row for row, entry in enumerate(manifest(out))}
    embeddings = np.load(out / "embeddings.npy")
    np.testing.assert_allclose(embeddings[rows["class0/a.bmp"]], embeddings[rows["class0/b.bmp"]], rtol=1e-5,
                               atol=1e-6)


def test_unchanged_files_moved_with_their_folder_are_not_embedded_again(collection: Path, checkpoint: Path,
                                                                        tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "export"
    first = export_folder(checkpoint, collection, out)
    stamps = np.load(out / STAMPS)
    assert stamps.shape == (first.images, len(STAMP_COLUMNS))
    moved = shutil.copytree(collection, tmp_path / "moved")  # copy2: modification times kept, new inodes
    shutil.rmtree(collection)
    os.replace(moved, collection)
    embedded = Embedded()
    monkeypatch.setattr(export_module, "embed_shard", embedded)
    again = export_folder(checkpoint, collection, out)
    assert embedded.images == [] and not again.up_to_date and again.images_reused == first.images
    now = np.load(out / STAMPS)
    inode = STAMP_COLUMNS.index("inode")
    assert (now[:, inode] != stamps[:, inode]).all()  # the files' new inodes are recorded
    assert np.array_equal(np.delete(now, [inode, STAMP_COLUMNS.index("ctime_ns")], 1),
                          np.delete(stamps, [inode, STAMP_COLUMNS.index("ctime_ns")], 1))
    assert export_folder(checkpoint, collection, out).up_to_date


def test_stamps_of_an_earlier_version_are_not_trusted(collection: Path, checkpoint: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Path, modification time and size alone, as earlier versions stamped rows, cannot tell a replaced file."""
    out = tmp_path / "export"
    first = export_folder(checkpoint, collection, out)
    np.save(out / STAMPS, np.load(out / STAMPS)[:, :3])
    tiny_image(collection / "class1" / "new.jpg", seed=5)  # so that the export is not up to date
    embedded = Embedded()
    monkeypatch.setattr(export_module, "embed_shard", embedded)
    assert export_folder(checkpoint, collection, out).images_reused == 0
    assert len(embedded.images) == first.images + 1
