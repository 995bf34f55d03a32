"""A ``log.csv`` without an ``epoch`` column (re-saved by a spreadsheet with semicolons) is reported as such: its
section used to say "log.csv holds no finished epoch yet" of a run with every epoch logged."""
from __future__ import annotations

from coseg.report.build import build_report
from tests.report.report_runs import LOG, run_files


def test_a_log_without_an_epoch_column_is_named_as_damaged(tmp_path):
    run = run_files(tmp_path / "run")
    (run / "log.csv").write_text(LOG.replace(",", ";"))
    result = build_report(run, progress=False)
    assert result.problems == [("Training: run", f"{run / 'log.csv'}: missing column(s) epoch")]
    assert "no finished epoch" not in result.path.read_text(encoding="utf-8")


def test_a_log_holding_its_header_only_has_no_finished_epoch_yet(tmp_path):
    run = run_files(tmp_path / "run")
    (run / "log.csv").write_text(LOG.splitlines()[0] + "\n")
    result = build_report(run, progress=False)
    assert not result.problems and "log.csv holds no finished epoch yet" in result.path.read_text(encoding="utf-8")
