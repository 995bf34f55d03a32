"""The scores table `coseg evaluate` prints keeps its columns under group names written by macOS (``É`` as ``E`` and a
combining accent) and of wide (CJK) characters: they were padded by their count of code points, not by the columns a
terminal gives them, and their P and J stood out of line."""
from __future__ import annotations

import unicodedata

from apps.cli import _print_summary


def test_columns_line_up_under_decomposed_and_wide_group_names(capsys):
    names = [unicodedata.normalize("NFD", "Égypte"), "风筝", "Kite Panda"]
    summary = {"per_group": {name: {"P": 50.0, "J": 25.0, "images": 3} for name in names}, "P": 50.0, "J": 25.0,
               "images": 9, "empty": "exclude", "empty_gt_images": 0}
    _print_summary(summary)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5
    starts = {sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1
                  for c in line[:line.index(" 50.00")]) for line in lines[1:]}
    assert starts == {len("Kite Panda  ")}  # every row's P, the mean's too, in one column
