"""A folder data set with many class folders that hold no image (e.g. ``--data`` given a parent folder by mistake):
the error names the first few and counts the others, instead of one line listing them all."""
from __future__ import annotations

import re

import pytest

from apps.retrieval.datasets import load_retrieval_split
from coseg.data import shown_names
from coseg.data.io import SHOWN_NAMES
from tests.coseg.files import left_red_image, write_rgb


def test_shown_names_lists_the_first_and_counts_the_others():
    names = [f"c{i:02d}" for i in range(SHOWN_NAMES + 5)]
    assert shown_names(names) == ", ".join(names[:SHOWN_NAMES]) + ", … (5 more)"
    assert shown_names(names[:2], quote=True) == "'c00', 'c01'"
    assert shown_names(["a\nb"]) == "a\\x0ab"  # printable: a line break in a name is shown, not printed


@pytest.mark.parametrize("named_empty", [False, True])
def test_an_error_naming_empty_class_folders_stays_short(tmp_path, named_empty):
    for c in range(3):
        for i in range(2):
            write_rgb(tmp_path / f"class{c}" / f"{i}.png", left_red_image() // (c + i + 1))
    empty = [f"empty{e:02d}" for e in range(40)]
    for name in empty:
        (tmp_path / name).mkdir()
    with pytest.raises(ValueError) as error:  # a name not found, or empty class folders named for training
        load_retrieval_split(tmp_path, "train", layout="folders",
                             train_classes=["class0", *(empty if named_empty else ["nosuch"])])
    message = str(error.value)
    assert "(30 more)" in message and len(re.findall(r"'empty\d\d'", message)) == SHOWN_NAMES, message
