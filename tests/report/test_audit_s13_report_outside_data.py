"""`coseg report` of a run trained with its --output inside its --data would put the report's PNGs into the data
set, where a later scan takes them for a group or class: refused before anything is written; a run elsewhere, or a
report page placed outside the data, is reported as before."""
from __future__ import annotations

import pytest
import yaml

from coseg.report.build import build_report
from tests.report.report_runs import run_files


def _run_inside(data_root, run):
    (data_root / "class0").mkdir(parents=True)
    run_files(run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "data": str(data_root)}))
    return run


def test_a_report_into_the_runs_data_folder_is_refused(tmp_path):
    run = _run_inside(tmp_path / "D", tmp_path / "D" / "run")
    with pytest.raises(ValueError, match=r"report_files: the report's pictures would go into the data folder .*D "):
        build_report(run)
    assert not (run / "report.html").exists() and not (run / "report_files").exists()


def test_the_same_run_reported_outside_its_data_is_written(tmp_path):
    run = _run_inside(tmp_path / "D", tmp_path / "D" / "run")
    result = build_report(run, output=tmp_path / "pages" / "run.html", progress=False)
    assert result.path.is_file() and not (run / "report_files").exists()


def test_a_recorded_data_folder_that_is_gone_is_no_reason_to_refuse(tmp_path):
    run = run_files(tmp_path / "run")  # config.yaml's data names no folder here
    assert build_report(run, progress=False).path.is_file()
