"""A neighbour's distance that neighbours.csv does not hold (blank, ``nan``, no number) shows as – in the retrieval
report, as a missing score does in the tables and captions, not as ``nan``."""
from __future__ import annotations

import csv
import math
import re

import pytest

from coseg.report.build import build_report
from coseg.report.html import MISSING, shown_number, table
from tests.report.test_retrieval_report import retrieval_evaluation


@pytest.mark.parametrize(("value", "spec", "shown"), [(math.nan, ".3f", "–"), (1.23456, ".3f", "1.235"),
                                                       (math.inf, ".1f", "inf"), (-0.04, ".1f", "-0.0")])
def test_shown_number(value, spec, shown):
    assert shown_number(value, spec) == shown


def test_a_missing_number_looks_the_same_in_tables_and_captions():
    assert f">{MISSING}</td>" in table(["d"], [[math.nan]]) and shown_number(math.nan, ".1f") == MISSING


def test_missing_distances_show_as_a_dash(tmp_path):
    output, *_ = retrieval_evaluation(tmp_path, queries=2)
    path = output / "neighbours.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row, cell in zip(rows, ["nan", "", "far", "NaN"]):
        row["distance"] = cell
    kept = float(rows[4]["distance"])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = build_report(output, thumbnail=16, progress=False)
    assert not result.problems
    text = result.path.read_text(encoding="utf-8")
    captions = re.findall(r"<figcaption>(\d+)\. <span class=\"mark-\w+\">.</span> ([^<]*)<br>", text)
    assert len(captions) == 2 * 5
    assert [shown for _, shown in captions[:5]] == ["–"] * 4 + [f"{kept:.3f}"]
    assert not re.search(r"nan<br>", text, re.IGNORECASE)
