"""Audit of make_synthetic_coseg: bad arguments refused naming them, before anything is written."""
from __future__ import annotations

import re

import pytest

from coseg.data import make_synthetic_coseg, synthetic_image


@pytest.mark.parametrize("names", [["", "b"], [".", "b"], ["..", "b"], ["a/../..", "b"], ["/abs", "b"]])
def test_group_names_that_are_no_folder_under_the_root_are_refused(tmp_path, names):
    with pytest.raises(ValueError, match="group names must name folders under the root"):
        make_synthetic_coseg(tmp_path / "root", num_groups=2, images_per_group=1, size=16, group_names=names)
    assert list(tmp_path.iterdir()) == []


def test_group_names_with_slashes_and_odd_characters_still_work(tmp_path):
    root = make_synthetic_coseg(tmp_path, num_groups=2, images_per_group=1, size=16,
                                group_names=["<b>bold</b> & x", "a . b"])
    assert (root / "images" / "<b>bold<" / "b> & x" / "img000.jpg").is_file()


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(size=16.5), TypeError, "size must be an integer, got 16.5"),
    (dict(num_groups=2.0), TypeError, "num_groups must be an integer, got 2.0"),
    (dict(images_per_group=1.5), TypeError, "images_per_group must be an integer, got 1.5"),
    (dict(seed=-1), ValueError, "seed must be an integer >= 0, got -1"),
])
def test_fractional_sizes_and_negative_seeds_are_named(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        make_synthetic_coseg(tmp_path / "root", **{"num_groups": 2, "images_per_group": 1, "size": 16, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_synthetic_image_refuses_a_fractional_size():
    with pytest.raises(TypeError, match=re.escape("size must be an integer, got 8.5")):
        synthetic_image(8.5, 0, 0)
