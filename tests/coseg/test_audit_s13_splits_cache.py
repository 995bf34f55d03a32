"""A splits file listing a group twice is refused (as a group named twice on the command line is); the disk cache
writes its entries without an fsync each (an entry a power cut damages is decoded again)."""
from __future__ import annotations

import json
import os

import pytest

from coseg.data import ImageCache, find_samples, load_split, make_synthetic_coseg


def test_a_split_listing_a_group_twice_is_refused_naming_it(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"test": ["00-star", "01-ellipse", "00-star"], "train": ["02-polygon"]}))
    with pytest.raises(ValueError, match=r"split 'test' in .*splits.json lists 1 name\(s\) more than once: '00-star'"):
        load_split(path, "test")
    assert load_split(path, "train") == {"02-polygon": "02-polygon"}


def test_cache_entries_are_not_fsynced_one_by_one(tmp_path, monkeypatch):
    root = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=3, size=32)
    samples = find_samples(root).samples
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    cache = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    cache.load(samples)
    assert calls == [] and len(list((tmp_path / "cache").rglob("*.npz"))) == len(samples)
    again = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    again.load(samples)
    assert again.from_disk == len(samples)
