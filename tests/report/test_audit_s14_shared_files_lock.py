"""Two pages of one stem (``x.html``, ``x.htm``) share their PNG folder ``x_files/``: a report of one started while a
report of the other is being written is refused at once, and the first comes out whole (each used to hold its own
page's lock, so both passed the check for a page sharing the folder and raced on it)."""
from __future__ import annotations

import os

import pytest

from coseg.report.build import build_report
from tests.report.report_runs import parse_page, run_files
from tests.report.test_concurrent_reports import during_the_first_section


@pytest.mark.parametrize(("first", "second"), [("x.html", "x.htm"), ("x.htm", "x"), ("a" * 250 + ".html", "a" * 250)],
                         ids=["htm", "no suffix", "long"])
def test_a_report_sharing_the_pictures_folder_of_one_being_written_is_refused(tmp_path, monkeypatch, first, second):
    run = run_files(tmp_path / "run")
    other = tmp_path / "other"
    other.mkdir()
    (other / "log.csv").write_text("epoch,train_loss\n1,5.0\n2,4.0\n")

    def second_report() -> str:
        with pytest.raises(ValueError) as error:
            build_report(other, tmp_path / second, progress=False)
        return str(error.value)

    refused = during_the_first_section(monkeypatch, second_report)
    result = build_report(run, tmp_path / first, progress=False)
    assert refused == [f"{tmp_path}: another `coseg report` is writing a report whose pictures go to "
                       f"{result.files.name} too (pid {os.getpid()} on host {os.uname().nodename}); wait until it "
                       "ends, or choose another --output"]
    assert not (tmp_path / second).exists()
    assert sorted(p.name for p in result.files.iterdir()) == ["s1_loss.png", "s1_val.png"]
    assert parse_page(result.path).images == [f"{result.files.name}/s1_loss.png", f"{result.files.name}/s1_val.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", "other", first, result.files.name])
