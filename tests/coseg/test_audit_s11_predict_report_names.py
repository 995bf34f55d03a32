"""`coseg predict --report` into an output whose masks would take the report's names: a group folder named
``report.html`` (the page) or ``report_files`` (its images) is refused before anything is written. A group named
``report.html`` used to have every mask written, then the run ended with "cannot write the report there (Is a
directory)", leaving ``report_files/`` behind."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import main


@pytest.mark.parametrize("group", ["report.html", "report_files"])
def test_a_group_named_like_the_report_is_refused_with_report(tmp_path: Path, group: str) -> None:
    (tmp_path / "in" / group).mkdir(parents=True)
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"")  # never read: refused first
    result = CliRunner().invoke(main, ["predict", "--checkpoint", str(model), "--input", str(tmp_path / "in"),
                                       "--output", str(tmp_path / "out"), "--report"])
    assert result.exit_code == 2, result.output
    assert f"has a sub-folder named {group}, where --report would put its page or images" in result.output
    assert not (tmp_path / "out").exists()
