"""Damaged result files spoil only their own section of a report, with a reason naming the file."""
from __future__ import annotations

import json

import pytest

from coseg.report.build import build_report
from tests.report.report_runs import LOG, evaluation_folder, parse_page, run_files
from tests.report.test_retrieval_report import retrieval_evaluation

HUGE_CELL = '"' + "x" * 200_000 + '"'  # beyond the csv module's field size limit


@pytest.mark.parametrize("damaged, section", [("eval/per_image.csv", "Evaluation: eval"),
                                              ("log.csv", "Training: run"),
                                              ("eval/predictions/index.csv", "Evaluation: eval")])
def test_csv_cell_beyond_the_field_limit_is_named_in_the_reason(tmp_path, damaged, section):
    run = evaluation_folder(tmp_path).parent
    (run / damaged).write_text(f"group,image,epoch\n{HUGE_CELL},a,1\n")
    result = build_report(run, per_group=1, thumbnail=16, progress=False)
    [(heading, reason)] = result.problems
    assert heading == section and reason.startswith(f"{run / damaged}: cannot read it (")
    assert result.sections == ["Training: run", "Evaluation: eval"]


@pytest.mark.parametrize("change, reason", [
    ({"per_group": [1, 2]}, "summary.json: per_group is a JSON array, not an object"),
    ({"per_group": {"plain group": "bad"}}, "summary.json: per_group.plain group is a JSON string, not an object"),
    ({"per_group": {"plain group": {"P": "x"}}}, "summary.json: per_group.plain group.P is not a number ('x')"),
    ({"P": [81.5]}, "summary.json: P is not a number ([81.5])"),
    ({"J": "high"}, "summary.json: J is not a number ('high')"),
    ({"skipped_files": "none"}, "summary.json: skipped_files is a JSON string, not an array"),
    ({"skipped_files": ["a.jpg"]}, "summary.json: skipped_files[0] is a JSON string, not an object"),
    ({"P": 10 ** 400}, "summary.json: P is too large a number (401 digits)"),
    ({"per_group": {"plain group": {"J": -10 ** 309}}}, "summary.json: per_group.plain group.J is too large a number "
                                                        "(310 digits)"),
    ({"J": True}, "summary.json: J is not a number (True)"),
    ({"images": -3}, "summary.json: images is not a count (-3)"),
    ({"images": False}, "summary.json: images is not a count (False)"),
    ({"skipped": 1.5}, "summary.json: skipped is not a count (1.5)"),
    ({"empty_gt_images": "2"}, "summary.json: empty_gt_images is not a count ('2')"),
    ({"per_group": {"plain group": {"images": -1}}}, "summary.json: per_group.plain group.images is not a count (-1)"),
])
def test_summary_of_the_wrong_shape_is_named_in_the_reason(tmp_path, change, reason):
    folder = evaluation_folder(tmp_path)
    summary = folder / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), **change}))
    result = build_report(folder.parent, per_group=1, thumbnail=16, progress=False)
    [(heading, found)] = result.problems
    assert heading == "Evaluation: eval" and found == f"{summary.parent / reason}"


def test_summary_with_an_integer_too_long_to_read_is_named_in_the_reason(tmp_path):
    folder = evaluation_folder(tmp_path)
    summary = folder / "summary.json"
    summary.write_text(summary.read_text().replace('"P": ', '"P": ' + "1" * 5000 + ', "was": ', 1))
    result = build_report(folder.parent, per_group=1, thumbnail=16, progress=False)
    assert result.problems == [("Evaluation: eval", f"{summary}: cannot read it (a number of 5000 digits, too long to "
                                                    "read)")]


@pytest.mark.parametrize("change, reason", [({"R@1": 10 ** 400}, "R@1 is too large a number (401 digits)"),
                                            ({"MAP@R": True}, "MAP@R is not a number (True)"),
                                            ({"images": -1}, "images is not a count (-1)"),
                                            ({"classes": 2.5}, "classes is not a count (2.5)")])
def test_retrieval_summary_with_a_number_out_of_place(tmp_path, change, reason):
    output, *_ = retrieval_evaluation(tmp_path, queries=2)
    summary = output / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), **change}))
    assert build_report(output, thumbnail=16, progress=False).problems == [("Retrieval evaluation: eval",
                                                                            f"{summary}: {reason}")]


def test_retrieval_summary_with_a_metric_that_is_no_number(tmp_path):
    output, *_ = retrieval_evaluation(tmp_path, queries=2)
    summary = output / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "NMI": None, "R@1": {"value": 1}}))
    [(heading, reason)] = build_report(output, thumbnail=16, progress=False).problems
    assert heading == "Retrieval evaluation: eval" and reason == f"{summary}: R@1 is not a number ({{'value': 1}})"


@pytest.mark.parametrize("damaged, column, cell", [("recall_at_k.csv", "k", "x"), ("neighbours.csv", "order", "1st"),
                                                   ("neighbours.csv", "rank", "<b>2</b>")])
def test_retrieval_cell_that_is_no_integer_is_named_in_the_reason(tmp_path, damaged, column, cell):
    output, *_ = retrieval_evaluation(tmp_path, queries=2)
    path = output / damaged
    header, first, *rest = path.read_text(encoding="utf-8").splitlines()
    cells = first.split(",")
    cells[header.split(",").index(column)] = cell
    path.write_text("\n".join([header, ",".join(cells), *rest]) + "\n", encoding="utf-8")
    [(heading, reason)] = build_report(output, thumbnail=16, progress=False).problems
    assert heading == "Retrieval evaluation: eval" and reason == f"{path}: {column} '{cell}' is not an integer"


def test_log_epoch_of_superscript_digits_is_dropped_like_other_non_integers(tmp_path):
    run = run_files(tmp_path / "run")
    (run / "log.csv").write_text(LOG + "\u00b2,0.0001,0.2,0.2,0.6,0.4,10.0,3.2,88.0,58.0\n")
    result = build_report(run, thumbnail=16, progress=False)
    assert not result.problems and len(parse_page(result.path).tables["table0"]) == 1 + 3


@pytest.mark.parametrize("epoch", ["1" + "0" * 400, "1" * 5000])
def test_log_epoch_too_large_to_plot_is_dropped_like_other_non_integers(tmp_path, epoch):
    run = run_files(tmp_path / "run")
    (run / "log.csv").write_text(LOG + epoch + ",0.0001,0.2,0.2,0.6,0.4,10.0,3.2,88.0,58.0\n")
    result = build_report(run, thumbnail=16, progress=False)
    assert not result.problems and len(parse_page(result.path).tables["table0"]) == 1 + 3


def test_log_values_too_large_to_plot_are_gaps_in_the_curves_and_shown_in_the_table(tmp_path):
    run = run_files(tmp_path / "run")
    (run / "log.csv").write_text(LOG + "4,0.0001,1e308,-1e308,0.6,0.4,10.0,3.2,1e300,-1.5e305\n")
    result = build_report(run, thumbnail=16, progress=False)
    assert not result.problems
    assert parse_page(result.path).tables["table0"][-1][2:4] == ["1e+308", "-1e+308"]
