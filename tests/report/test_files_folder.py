"""The report's files folder (``report_files/``) where something other than an earlier report's pictures is."""
from __future__ import annotations

import pytest

from coseg.report.build import build_report
from tests.report.report_runs import parse_page, run_files


def test_files_a_file_browser_left_do_not_block_the_next_report(tmp_path):
    """Viewing report_files/ in Finder or Explorer leaves .DS_Store / Thumbs.db there: the report is still written
    again (they went with the folder), not refused as "files no report wrote"."""
    run = run_files(tmp_path / "run")
    files = build_report(run, progress=False).files
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "._s1_loss.png"):
        (files / name).write_bytes(b"browser state")
    result = build_report(run, progress=False)
    assert sorted(p.name for p in result.files.iterdir()) == ["s1_loss.png", "s1_val.png"]
    assert all((run / src).is_file() for src in parse_page(result.path).images)


def test_a_file_where_the_files_folder_goes_is_named(tmp_path):
    run = run_files(tmp_path / "run")
    (run / "report_files").write_text("mine")
    with pytest.raises(ValueError, match=r"report_files: not a folder, yet the report's pictures go there"):
        build_report(run, progress=False)
    assert (run / "report_files").read_text() == "mine" and not (run / "report.html").exists()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
