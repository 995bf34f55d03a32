"""The report's options given without --report (`coseg evaluate/predict --thumbnail`, `coseg retrieval evaluate
--report-queries`) were silently ignored: a usage error now, before anything is read."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import main


@pytest.mark.parametrize("command, given", [
    (["evaluate", "--data", "D", "--output", "O", "--thumbnail", "96"], "--thumbnail"),
    (["predict", "--input", "D", "--output", "O", "--thumbnail", "96"], "--thumbnail"),
    (["retrieval", "evaluate", "--data", "D", "--output", "O", "--report-queries", "5"], "--report-queries"),
    (["retrieval", "evaluate", "--data", "D", "--output", "O", "--thumbnail", "96", "--report-queries", "5"],
     "--thumbnail, --report-queries")], ids=["evaluate", "predict", "retrieval", "retrieval-both"])
def test_a_report_option_without_report_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         command: list[str], given: str) -> None:
    monkeypatch.chdir(tmp_path)
    Path("D").mkdir()
    Path("m.safetensors").write_bytes(b"not read")
    result = CliRunner().invoke(main, [*command, "--checkpoint", "m.safetensors"])
    assert result.exit_code == 2, result.output
    assert f"{given}: an option of the report, which only --report writes" in result.output
    assert not Path("O").exists()


def test_the_defaults_without_report_are_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what the command line gave is refused: the defaults go on to the command (here: to the model file)."""
    monkeypatch.chdir(tmp_path)
    Path("D").mkdir()
    Path("m.safetensors").write_bytes(b"not read")
    result = CliRunner().invoke(main, ["evaluate", "--data", "D", "--output", "O", "--checkpoint", "m.safetensors"])
    assert result.exit_code == 1 and "an option of the report" not in result.output, result.output
