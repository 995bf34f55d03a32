"""Groups linked as sharing images: an empty file (a failed download) in two groups is no image they share; a
held-out count that is no whole number is refused naming it."""
from __future__ import annotations

import pytest

from coseg.data import Sample, groups_sharing_images, holdout_groups, sharing_pairs


def test_empty_files_in_two_groups_do_not_link_them(tmp_path):
    samples = []
    for group in ("cats", "dogs"):
        (tmp_path / group).mkdir()
        for name, data in (("a.jpg", group.encode() * 8), ("broken.jpg", b"")):
            (tmp_path / group / name).write_bytes(data)
            samples.append(Sample(tmp_path / group / name, None, group))
    together = groups_sharing_images(samples)
    assert together == {}
    assert sharing_pairs(["dogs"], ["cats"], together) == []  # --val-groups dogs is not refused as a leak


def test_identical_files_still_link_their_groups(tmp_path):
    samples = []
    for group in ("full", "subset", "other"):
        (tmp_path / group).mkdir()
        data = b"other" * 8 if group == "other" else b"same" * 8
        (tmp_path / group / "x.jpg").write_bytes(data)
        (tmp_path / group / "empty.jpg").write_bytes(b"")
        samples += [Sample(tmp_path / group / name, None, group) for name in ("x.jpg", "empty.jpg")]
    assert groups_sharing_images(samples) == {"full": "full", "subset": "full"}


@pytest.mark.parametrize("number", [1.5, -1, "1"])
def test_a_held_out_number_must_be_a_whole_count(number):
    with pytest.raises(ValueError, match=f"number must be an integer >= 0, got {number!r}"):
        holdout_groups(["a", "b", "c"], number=number)
