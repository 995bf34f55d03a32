"""coseg.data.cache prunes what no run reads again: the entries of a sample's earlier files, entries of the earlier
naming and temporary files of killed writes; it keeps what another run may read, and a stale entry is never read."""
from __future__ import annotations

import multiprocessing
import os
import sys
import time

import numpy as np
import pytest

import coseg.data.cache as cache_module
from coseg.atomic import TEMPORARY_MARK
from coseg.data import ImageCache, Sample, resize_image, resize_mask
from tests.coseg.files import half_mask, left_red_image, write_cv2, write_rgb


@pytest.fixture
def samples(tmp_path) -> list[Sample]:
    return [Sample(write_rgb(tmp_path / f"{name}.png", left_red_image(24, 24)),
                   write_cv2(tmp_path / f"{name}_mask.png", half_mask(24, 24).astype(np.uint8) * 255), "g")
            for name in ("a", "b")]


def _load(samples, folder, size=16) -> ImageCache:
    cache = ImageCache(size, cache_dir=folder, progress=False)
    assert cache.load(samples) == samples
    return cache


def _entries(folder) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def test_the_entry_of_an_edited_image_is_replaced_not_kept_beside_the_new_one(samples, tmp_path):
    folder = tmp_path / "cache"
    _load(samples, folder)
    before = _entries(folder)
    assert len(before) == 2
    time.sleep(0.05)  # past the kernel's coarse clock tick, which timestamps change times
    edited = np.full((24, 24, 3), 90, np.uint8)
    write_rgb(samples[0].image, edited)
    again = _load(samples, folder)
    assert again.decoded == 1 and again.from_disk == 1
    np.testing.assert_array_equal(again[samples[0]].image, resize_image(edited, 16))  # never the old image
    after = _entries(folder)
    assert len(after) == 2 and len(after & before) == 1  # the untouched sample's entry kept, the edited one's replaced
    third = _load(samples, folder)
    assert third.decoded == 0
    np.testing.assert_array_equal(third[samples[0]].image, resize_image(edited, 16))


def test_entries_another_run_may_read_are_kept(samples, tmp_path):
    """Another image size, the same image without its mask, and files that are not cache entries stay."""
    folder = tmp_path / "cache"
    _load(samples, folder, size=8)
    _load([Sample(samples[0].image, None, "g")], folder)
    (folder / "features-0123.npy").write_bytes(b"x")
    (folder / "notes.txt").write_bytes(b"x")
    kept = _entries(folder)
    _load(samples, folder)
    assert kept < _entries(folder) and len(_entries(folder)) == len(kept) + 2


def test_entries_of_the_earlier_naming_and_old_temporaries_are_removed(samples, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    unslotted = folder / f"{'ab' * 20}.npz"  # how entries were named before: no run reads them any more
    unslotted.write_bytes(b"x")
    abandoned = folder / f".{'0' * 16}-{'cd' * 20}.npz{TEMPORARY_MARK}k1ll3d.npz"
    fresh = folder / f".{'0' * 16}-{'ef' * 20}.npz{TEMPORARY_MARK}wr1t1n.npz"  # another process is writing it
    other = folder / f".features-0123.npy{TEMPORARY_MARK}x.npy"  # not the image cache's
    for path in (abandoned, fresh, other):
        path.write_bytes(b"x")
    hours_ago = time.time() - 2 * 3600  # a write killed two hours ago
    os.utime(abandoned, (hours_ago, hours_ago))
    os.utime(other, (hours_ago, hours_ago))
    cache = _load(samples, folder)
    assert cache.decoded == 2
    assert not unslotted.exists() and not abandoned.exists() and fresh.exists() and other.exists()


def test_a_cache_folder_whose_stale_entries_cannot_be_removed_is_still_read(samples, tmp_path, monkeypatch):
    """A read-only cache folder (shared, or on a read-only mount) is only read: what cannot be removed stays."""
    folder = tmp_path / "cache"
    _load(samples, folder)
    stale = folder / f"{next(iter(_entries(folder)))[:16]}-{'ab' * 20}.npz"  # the slot of a sample, an older key
    stale.write_bytes(b"x")

    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    with monkeypatch.context() as read_only:
        read_only.setattr(cache_module.os, "unlink", refused)
        cache = _load(samples, folder)
    assert cache.from_disk == 2 and cache.skipped == [] and stale.exists()
    np.testing.assert_array_equal(cache[samples[1]].mask, resize_mask(half_mask(24, 24), 16))


def _load_in_process(samples, folder) -> tuple:
    cache = ImageCache(16, cache_dir=folder, progress=False, threads=2)
    kept = cache.load(samples)
    return len(kept), cache.skipped, [cache[s].image.tolist() for s in samples]


@pytest.mark.skipif(sys.platform != "linux", reason="forks the test process")
def test_processes_pruning_one_cache_folder_at_once_all_read_the_edited_image(samples, tmp_path):
    """As torchrun's processes do: each loads the same samples after an edit, each removing the old entry."""
    folder = tmp_path / "cache"
    _load(samples, folder)
    time.sleep(0.05)
    edited = np.full((24, 24, 3), 90, np.uint8)
    write_rgb(samples[0].image, edited)
    with multiprocessing.get_context("fork").Pool(3) as pool:
        outcomes = pool.starmap(_load_in_process, [(samples, folder)] * 3, chunksize=1)
    expected = [resize_image(edited, 16).tolist(), resize_image(left_red_image(24, 24), 16).tolist()]
    assert outcomes == [(2, [], expected)] * 3
    assert len(_entries(folder)) == 2 and not [p for p in folder.iterdir() if TEMPORARY_MARK in p.name]
