"""Two `coseg report` runs writing one page: the second is refused at once, and the first's page and pictures come
out whole (the second used to remove the first's staging folder as a killed report's leftover)."""
from __future__ import annotations

import os

import pytest

import coseg.report.build as build_module
from coseg.report.build import build_report
from tests.report.report_runs import parse_page, run_files


def during_the_first_section(monkeypatch, action) -> list:
    """Run ``action()`` once, while the report being built writes its first section; return [its result]."""
    results = []
    real = build_module.training_section

    def section(folder, pngs, prefix):
        if not results:
            results.append(None)
            results[0] = action()
        return real(folder, pngs, prefix)

    monkeypatch.setattr(build_module, "training_section", section)
    return results


def test_a_second_report_of_the_same_page_is_refused_while_the_first_writes(tmp_path, monkeypatch):
    run = run_files(tmp_path / "run")

    def second_report() -> str:
        with pytest.raises(ValueError) as error:
            build_report(run, progress=False)
        return str(error.value)

    refused = during_the_first_section(monkeypatch, second_report)
    result = build_report(run, progress=False)
    assert refused == [f"{run}: another `coseg report` is writing this report (pid {os.getpid()} on host "
                       f"{os.uname().nodename}); wait until it ends, or choose another --output"]
    assert sorted(p.name for p in result.files.iterdir()) == ["s1_loss.png", "s1_val.png"]
    assert all((run / src).is_file() for src in parse_page(result.path).images)
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no staging folder, no lock file left


def test_reports_of_two_pages_in_one_folder_do_not_block_each_other(tmp_path, monkeypatch):
    run = run_files(tmp_path / "run")
    inner = during_the_first_section(monkeypatch, lambda: build_report(run, run / "other.html", progress=False))
    result = build_report(run, progress=False)
    for page in (result, inner[0]):
        assert not page.problems and sorted(p.name for p in page.files.iterdir()) == ["s1_loss.png", "s1_val.png"]
        assert all((run / src).is_file() for src in parse_page(page.path).images)
