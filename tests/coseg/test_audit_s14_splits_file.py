"""A splits file naming a split twice (a split copied and edited without renaming it): JSON keeps the last one
silently, so `evaluate --split test` scored other groups than the file seemed to say; it is refused, naming it."""
from __future__ import annotations

import pytest

from coseg.data import load_split


@pytest.mark.parametrize("text, twice", [
    ('{"test": ["a"], "train": ["b"], "test": ["c"]}', "'test'"),
    ('{"test8": {"006 Red Sox": "redsox", "006 Red Sox": "sox"}}', "'006 Red Sox'"),
], ids=["split", "mapped-folder"])
def test_a_name_given_twice_in_the_file_is_refused(tmp_path, text, twice):
    path = tmp_path / "splits.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"^cannot read splits file {path}: 1 key\\(s\\) given more than once in one "
                                         f"object: {twice}$"):
        load_split(path, "test" if "test\"" in text else "test8")


def test_distinct_names_still_load(tmp_path):
    path = tmp_path / "splits.json"
    path.write_text('{"test": ["a", "b"], "train": ["c"], "test8": {"006 Red Sox": "redsox"}}')
    assert load_split(path, "test") == {"a": "a", "b": "b"}
    assert load_split(path, "test8") == {"006 Red Sox": "redsox"}
