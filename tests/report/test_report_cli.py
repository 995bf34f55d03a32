"""``--report`` on evaluate / predict / retrieval evaluate, ``coseg report RUN_DIR``, ``--quiet`` and the closing
summaries, on tiny random-weight models."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from apps.cli import main
from apps.retrieval.train import train as train_retrieval
from coseg.report.build import build_report
from tests.apps.retrieval_runs import tiny_config, tiny_set
from tests.report.report_runs import AWKWARD_GROUPS, awkward_set, parse_page, training_run


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def coseg_run(tmp_path):
    return awkward_set(tmp_path / "data"), training_run(tmp_path / "run")


def test_evaluate_and_predict_reports_then_coseg_report(tmp_path, coseg_run):
    data, checkpoint = coseg_run
    evaluation = checkpoint.parent / "eval"
    r = invoke("evaluate", "--checkpoint", checkpoint, "--data", data, "--output", evaluation, "--report",
               "--thumbnail", 40, "--quiet")
    assert r.exit_code == 0, r.output
    assert f"report: {evaluation / 'report.html'} (2 section(s)" in r.output and r.stderr == ""
    assert len(list((evaluation / "predictions").rglob("*.png"))) == 9
    assert json.loads((evaluation / "summary.json").read_text())["checkpoint"] == str(checkpoint.resolve())
    page = parse_page(evaluation / "report.html")
    assert len(page.images) == 2 + 9 * 3 and all((evaluation / src).is_file() for src in page.images)
    assert {row[0] for row in page.tables["s2-groups"][1:]} == set(AWKWARD_GROUPS)

    predictions = tmp_path / "pred"
    r = invoke("predict", "--checkpoint", checkpoint, "--input", data / "images", "--output", predictions,
               "--report", "--quiet")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()  # stderr may warn that this barely trained model's masks are empty
    assert lines[-3:] == ["wrote 9 mask(s)", f"outputs: masks in {predictions}/",
                          f"report: {predictions / 'report.html'} (1 section(s); images in "
                          f"{predictions / 'report_files'}/)"]
    page = parse_page(predictions / "report.html")
    assert len(page.images) == 9 * 2 and len(page.tables["table0"]) == 1 + 9

    r = invoke("report", checkpoint.parent, "--per-group", 1, "--quiet")  # the run folder holding eval/
    assert r.exit_code == 0, r.output
    page = parse_page(checkpoint.parent / "report.html")
    assert len(page.images) == 2 + 3 * 3 and all((checkpoint.parent / src).is_file() for src in page.images)
    r = invoke("report", tmp_path / "data")
    assert r.exit_code != 0 and "nothing to report" in r.output and "Traceback" not in r.output


def test_evaluate_without_report_removes_the_earlier_evaluations_report(tmp_path, coseg_run):
    # the page left by `evaluate --report` showed the earlier scores beside the new summary.json
    data, checkpoint = coseg_run
    evaluation = tmp_path / "eval"
    r = invoke("evaluate", "--checkpoint", checkpoint, "--data", data, "--output", evaluation, "--report",
               "--thumbnail", 16, "--quiet")
    assert r.exit_code == 0 and (evaluation / "report.html").is_file(), r.output
    r = invoke("evaluate", "--checkpoint", checkpoint, "--data", data, "--output", evaluation, "--single-image",
               "--quiet")
    assert r.exit_code == 0 and (evaluation / "summary.json").is_file(), r.output
    assert not (evaluation / "report.html").exists() and not (evaluation / "report_files").exists()


def test_predict_writing_masks_without_report_removes_the_earlier_report(tmp_path, coseg_run):
    # the page left by `predict --report` showed the masks an --overwrite run with other settings replaced
    data, checkpoint = coseg_run
    predictions = tmp_path / "pred"
    common = ("--checkpoint", checkpoint, "--input", data / "images", "--output", predictions, "--quiet")
    r = invoke("predict", *common, "--report", "--thumbnail", 16)
    assert r.exit_code == 0 and (predictions / "report.html").is_file(), r.output
    r = invoke("predict", *common)  # nothing new written: the report still shows these masks
    assert r.exit_code == 0 and "kept 9 already done" in r.output and (predictions / "report.html").is_file()
    r = invoke("predict", *common, "--single-image", "--overwrite")
    assert r.exit_code == 0 and "wrote 9 mask(s)" in r.output, r.output
    assert not (predictions / "report.html").exists() and not (predictions / "report_files").exists()
    assert len(list(predictions.rglob("*.png"))) == 9


def test_quiet_silences_progress(tmp_path, coseg_run):
    data, checkpoint = coseg_run
    loud = invoke("predict", "--checkpoint", checkpoint, "--input", data / "images", "--output", tmp_path / "a",
                  "--report")
    quiet = invoke("predict", "--checkpoint", checkpoint, "--input", data / "images", "--output", tmp_path / "b",
                   "--report", "--quiet")
    assert loud.exit_code == quiet.exit_code == 0
    assert "predicting" in loud.stderr and "report thumbnails" in loud.stderr
    # --quiet silences progress, not warnings (this barely trained model's masks may all be empty)
    assert all(line.startswith("warning: ") for line in quiet.stderr.splitlines()) and "outputs:" in quiet.stdout


def test_retrieval_evaluate_report(tmp_path):
    data = tiny_set(tmp_path / "data")
    run = train_retrieval(tiny_config(data, tmp_path / "run")).output
    r = invoke("retrieval", "evaluate", "--checkpoint", run / "best.safetensors", "--data", data, "--output",
               run / "eval", "--report", "--report-queries", 3, "--quiet")
    assert r.exit_code == 0, r.output
    assert r.stderr == "" and f"report: {run / 'eval' / 'report.html'}" in r.output
    assert "neighbours.csv, recall_at_k.csv" in r.output
    page = parse_page(run / "eval" / "report.html")
    assert len(page.images) == 2 + 1 + 3 * 8 and all((run / "eval" / src).is_file() for src in page.images)


def test_every_command_has_quiet_and_report_help():
    for command in (["train"], ["evaluate"], ["predict"], ["demo"], ["report"], ["retrieval", "train"],
                    ["retrieval", "evaluate"], ["retrieval", "export"], ["retrieval", "search"]):
        r = invoke(*command, "--help")
        assert r.exit_code == 0 and "--quiet" in r.output, command
    for command in (["evaluate"], ["predict"], ["retrieval", "evaluate"]):
        assert "--report" in invoke(*command, "--help").output
    text = invoke("report", "--help").output
    assert "log.csv" in text and "per_image.csv" in text and "`coseg predict` output" in text


def test_report_sizes_below_one_are_refused_before_any_work(tmp_path, coseg_run):
    data, checkpoint = coseg_run
    for args in (["evaluate", "--checkpoint", checkpoint, "--data", data, "--output", tmp_path / "e", "--report",
                  "--thumbnail", 0],
                 ["report", checkpoint.parent, "--per-group", 0], ["report", checkpoint.parent, "--thumbnail", 0]):
        r = invoke(*args)
        assert r.exit_code == 2 and "is not in the range x>=1" in r.output, r.output
    assert not (tmp_path / "e").exists() and not (checkpoint.parent / "report.html").exists()


def test_reports_follow_a_moved_project_whose_path_is_not_utf8(tmp_path):
    project = tmp_path / os.fsdecode(b"project \xff")
    data, checkpoint = awkward_set(project / "data"), training_run(project / "run")
    evaluation, predictions = checkpoint.parent / "eval", project / "pred"
    for args in (["evaluate", "--checkpoint", checkpoint, "--data", data, "--output", evaluation],
                 ["predict", "--checkpoint", checkpoint, "--input", data / "images", "--output", predictions]):
        r = invoke(*args, "--report", "--thumbnail", 16, "--quiet")
        assert r.exit_code == 0, r.output  # the summary's paths were written as printable text (it failed to)
    moved = tmp_path / "moved"
    shutil.move(project, moved)  # what the results name is no longer where it was
    for folder, sections in ((moved / "run" / "eval", ["Training: run", "Evaluation: eval"]),
                             (moved / "pred", ["Predictions: pred"])):
        result = build_report(folder, per_group=1, thumbnail=16, progress=False)
        assert result.sections == sections and not result.problems, result.problems
        assert "not shown" not in result.path.read_text(encoding="utf-8")  # each thumbnail found where it moved
