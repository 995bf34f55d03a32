"""coseg.data.cache: a --cache-dir naming a file says so (OSError's "File exists" read as if the folder were fine)."""
from __future__ import annotations

import pytest

from coseg.data import ImageCache, Sample
from tests.coseg.files import left_red_image, write_rgb


def test_a_cache_dir_that_is_a_file_is_named_as_one(tmp_path):
    sample = Sample(write_rgb(tmp_path / "a.png", left_red_image(24, 24)), None, "g")
    (tmp_path / "cache").write_text("notes")
    with pytest.raises(ValueError, match=r"cannot write to the cache folder .*cache \(it is a file, not a folder\); "
                                         "choose another --cache-dir or leave it out"):
        ImageCache(16, cache_dir=tmp_path / "cache", progress=False).load([sample])
    assert (tmp_path / "cache").read_text() == "notes"
