"""``remove_report`` (evaluate, predict, train, demo and retrieval evaluate remove an earlier report with it) takes the
locks `coseg report` takes for the page: while a report writes the page it removes nothing and says so, naming the
page and that process. Was: it removed the page or its pictures folder while the report was publishing them."""
from __future__ import annotations

import socket

import pytest

from coseg.report.build import build_report, remove_report
from tests.coseg.test_audit_s15_evaluate_lock import evaluate, held, setup, snapshot  # noqa: F401 (setup: fixture)
from tests.report.report_runs import parse_page, run_files
from tests.report.test_concurrent_reports import during_the_first_section

LOCKS = [(".report.html.lock", "`coseg report` is writing report.html there"),
         (".report_files.lock", "`coseg report` is writing pictures into report_files there")]


@pytest.mark.parametrize("lock_file, busy", LOCKS, ids=["page", "pictures"])
def test_remove_report_while_another_process_writes_the_report_is_refused(tmp_path, lock_file, busy):
    run = run_files(tmp_path / "run")
    build_report(run, progress=False)
    with held(run, lock_file) as child:
        before = snapshot(run)  # the holder's lock file too
        with pytest.raises(ValueError) as refused:
            remove_report(run)
        assert str(refused.value) == (f"{run}: {busy}, which this run would remove (pid {child.pid} on host "
                                      f"{socket.gethostname()}); wait until it ends, or choose another --output")
        assert snapshot(run) == before
    remove_report(run)  # the killed holder's lock file blocks nothing; none of remove_report's is left
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "log.csv"]


def test_remove_report_during_a_report_of_its_folder_leaves_that_report_whole(tmp_path, monkeypatch):
    run = run_files(tmp_path / "run")
    build_report(run, progress=False)

    def remove() -> str:
        with pytest.raises(ValueError) as refused:
            remove_report(run)
        return str(refused.value)

    refused = during_the_first_section(monkeypatch, remove)
    result = build_report(run, progress=False)
    assert refused[0].startswith(f"{run}: `coseg report` is writing report.html there, which this run would remove")
    assert sorted(p.name for p in result.files.iterdir()) == ["s1_loss.png", "s1_val.png"]
    assert all((run / src).is_file() for src in parse_page(result.path).images)


def test_remove_report_without_a_report_makes_nothing(tmp_path):
    remove_report(tmp_path / "missing")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report.html").write_text("<p>my own page</p>")
    with held(tmp_path / "run", ".report.html.lock"):  # nothing of a report to remove: not refused
        remove_report(tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert (tmp_path / "run" / "report.html").read_text() == "<p>my own page</p>"


@pytest.mark.parametrize("extra", [[], ["--report"]], ids=["plain", "report"])
def test_an_evaluate_while_a_report_of_its_folder_runs_leaves_the_earlier_evaluation_whole(setup, extra):
    data, model, out = setup
    assert evaluate(data, model, out, "--report")[0] == 0
    with held(out, ".report.html.lock") as child:
        before = snapshot(out)  # the holder's lock file too
        code, output = evaluate(data, model, out, *extra)
        assert code == 1 and output.strip() == (
            f"Error: {out}: `coseg report` is writing report.html there, which this run would remove (pid {child.pid} "
            f"on host {socket.gethostname()}); wait until it ends, or choose another --output"), output
        assert snapshot(out) == before  # its summary, per_image.csv, masks and report
