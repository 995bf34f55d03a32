"""An evaluation stopped before its end leaves its results without the ``summary.json`` both ``evaluate`` commands
write last: the report of its run says so in a section of its own instead of leaving the evaluation out unsaid,
and a report of the evaluation folder alone is written with that section rather than refused as holding nothing."""
from __future__ import annotations

import pytest

from coseg.report.build import build_report
from coseg.report.files import NEIGHBOURS
from tests.report.report_runs import evaluation_folder, parse_page


def test_an_evaluation_stopped_before_its_summary_is_named_in_its_runs_report(tmp_path):
    evaluation = evaluation_folder(tmp_path)
    (evaluation / "summary.json").unlink()  # as write_evaluation leaves it when killed after per_image.csv
    result = build_report(evaluation.parent, progress=False)
    assert result.sections == ["Training: run", "Evaluation: eval"]
    (heading, reason), = result.problems
    assert heading == "Evaluation: eval"
    assert reason.startswith(f"{evaluation / 'summary.json'} is missing beside per_image.csv: the evaluation was "
                             "stopped before its end")
    page = result.path.read_text(encoding="utf-8")
    assert "<strong>Not reported:</strong>" in page and "is missing beside per_image.csv" in page
    assert parse_page(result.path).images  # the run's curves are still there


@pytest.mark.parametrize("name", ["per_image.csv", NEIGHBOURS])
def test_a_folder_holding_only_an_unfinished_evaluation_gets_a_report_saying_so(tmp_path, name):
    (tmp_path / name).write_text("order\n")
    result = build_report(tmp_path, progress=False)
    (heading, reason), = result.problems
    assert heading == ("Evaluation: " if name == "per_image.csv" else "Retrieval evaluation: ") + tmp_path.name
    assert f"summary.json is missing beside {name}" in reason and "evaluate into this folder again" in reason
    assert result.path.is_file()
