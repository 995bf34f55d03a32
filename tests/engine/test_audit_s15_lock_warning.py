"""On a file system that takes no lock, a run taking several locks in one folder (`coseg report`: the page's and its
pictures'; `coseg evaluate`: its own and predict's, then the report's) warned once for each lock: one warning now."""
from __future__ import annotations

import errno
import fcntl

from coseg.report.build import build_report
from tests.engine.test_run_lock_unsupported import refusing
from tests.report.report_runs import run_files


def test_a_report_on_a_file_system_without_locks_warns_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fcntl, "flock", refusing(errno.ENOLCK))
    run = run_files(tmp_path / "run")
    result = build_report(run, progress=False)
    assert result.path.is_file()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "takes no lock" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {run} is on a file system that takes no lock")
    assert not [p.name for p in run.iterdir() if p.name.endswith(".lock")]
