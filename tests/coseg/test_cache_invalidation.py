"""coseg.data.cache: a stored entry is reused only for the very files it was decoded from, and a damaged one is
decoded again whatever the damage."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from coseg.data import ImageCache, Sample, resize_mask
from tests.coseg.files import half_mask, left_red_image, write_cv2, write_rgb


@pytest.fixture
def sample(tmp_path) -> Sample:
    """An image with a BMP mask (uncompressed: any mask of that size is a file of the same byte length)."""
    image = write_rgb(tmp_path / "a.png", left_red_image(24, 24))
    return Sample(image, write_cv2(tmp_path / "a.bmp", half_mask(24, 24).astype(np.uint8) * 255, ".bmp"), "g")


def _store(sample: Sample, folder: Path) -> ImageCache:
    cache = ImageCache(16, cache_dir=folder, progress=False)
    cache.load([sample])
    assert cache.decoded == 1
    return cache


@pytest.mark.parametrize("replace", [True, False], ids=["replaced", "rewritten_in_place"])
def test_a_mask_changed_behind_the_same_size_and_mtime_is_decoded_again(sample, tmp_path, replace):
    """A corrected mask of the same byte length whose modification time is put back (cp -p, rsync -t, tar and
    unzip restore it; a filesystem of 1 or 2 s resolution gives it anyway) was served from the cache as the old
    mask: the cache key now also holds the file's inode and change time, which no tool puts back."""
    _store(sample, tmp_path / "cache")
    stat = os.stat(sample.mask)
    inverted = (~half_mask(24, 24)).astype(np.uint8) * 255
    if replace:  # written beside it and renamed over it, as editors and atomic writers do
        os.replace(write_cv2(tmp_path / "new.bmp", inverted, ".bmp"), sample.mask)
    else:
        time.sleep(0.05)  # past the kernel's coarse clock tick, which timestamps change times
        write_cv2(sample.mask, inverted, ".bmp")
    os.utime(sample.mask, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(sample.mask).st_size == stat.st_size and os.stat(sample.mask).st_mtime_ns == stat.st_mtime_ns
    again = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    again.load([sample])
    assert again.decoded == 1 and again.from_disk == 0
    np.testing.assert_array_equal(again[sample].mask, resize_mask(~half_mask(24, 24), 16))


def test_an_untouched_file_is_still_read_from_the_cache(sample, tmp_path):
    first = _store(sample, tmp_path / "cache")
    os.stat(sample.image)  # reading and stat-ing leave the key alone
    sample.image.read_bytes()
    again = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    again.load([sample])
    assert again.decoded == 0 and again.from_disk == 1
    np.testing.assert_array_equal(again[sample].mask, first[sample].mask)


def _entry(folder: Path) -> Path:
    (entry,) = folder.glob("*.npz")
    return entry


def _central_directory_flag_offset(data: bytes) -> int:
    """Offset of the first central-directory record's general-purpose flag (its bit 0: encrypted)."""
    return data.index(b"PK\x01\x02") + 8


@pytest.mark.parametrize("damage", [
    "version",  # the 'version needed to extract' of the first file garbled: zipfile raised NotImplementedError
    "method",  # its compression method garbled: NotImplementedError
    "encrypted",  # its encryption flag set: RuntimeError (password required)
    "npy_not_npz",  # a bare .npy where an .npz belongs: np.load returned an array, not usable in a with block
    "size_shape",  # 'size' of one value, not (H, W): IndexError
    "mask_dtype",  # a mask of another dtype: was served as it is
])
def test_a_damaged_cache_file_of_any_kind_is_decoded_again(sample, tmp_path, damage):
    """Bytes garbled in a cache file's zip directory (a bad sector, a copy cut short) crashed the run, in ``load``
    or in a loader worker, instead of the entry being decoded again; so did entries of the wrong shape or dtype."""
    first = _store(sample, tmp_path / "cache")
    entry = _entry(tmp_path / "cache")
    if damage in ("version", "method", "encrypted"):
        data = bytearray(entry.read_bytes())
        flag = _central_directory_flag_offset(bytes(data))
        if damage == "version":
            data[flag - 2] = 0xFF
        elif damage == "method":
            data[flag + 2] = 0x63
        else:
            data[flag] |= 1
        entry.write_bytes(bytes(data))
    elif damage == "npy_not_npz":
        with open(entry, "wb") as f:
            np.save(f, first[sample].image)
    else:
        arrays = {"image": first[sample].image, "size": np.asarray(first[sample].size), "mask": first[sample].mask}
        if damage == "size_shape":
            arrays["size"] = np.asarray([24])
        else:
            arrays["mask"] = first[sample].mask.astype(np.int64) * 255
        with open(entry, "wb") as f:
            np.savez(f, **arrays)
    again = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    assert again.load([sample]) == [sample]
    assert again.decoded == 1 and again.from_disk == 0 and again.skipped == []
    np.testing.assert_array_equal(again[sample].image, first[sample].image)
    np.testing.assert_array_equal(again[sample].mask, first[sample].mask)
    assert again[sample].mask.dtype == np.uint8 and again[sample].size == (24, 24)
    rebuilt = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    rebuilt.load([sample])
    assert rebuilt.from_disk == 1


def test_an_entry_damaged_during_a_run_read_from_disk_is_decoded_again(sample, tmp_path, monkeypatch):
    """Samples beyond the memory share are read from their cache file on each use: damaged meanwhile, the sample
    is decoded from its files instead of the loader crashing."""
    import coseg.data.cache as cache_module

    first = _store(sample, tmp_path / "cache")
    cache = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    monkeypatch.setattr(cache_module, "physical_memory", lambda: 1)
    cache.load([sample])
    assert cache.on_disk
    entry = _entry(tmp_path / "cache")
    data = bytearray(entry.read_bytes())
    data[_central_directory_flag_offset(bytes(data))] |= 1
    entry.write_bytes(bytes(data))
    np.testing.assert_array_equal(cache[sample].mask, first[sample].mask)
