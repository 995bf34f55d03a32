"""An empty --output or --cache-dir (a script's unset variable, `--output "$RUN"`) is a usage error naming the
option, for both trainers, not the current folder: `coseg train --output ''` trained there, writing its checkpoints,
log and config among whatever the folder held."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import main


@pytest.mark.parametrize("command", [["train"], ["retrieval", "train"]])
@pytest.mark.parametrize("option, value", [("--output", ""), ("--output", " "), ("--cache-dir", "")])
def test_an_empty_folder_on_the_command_line_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        command: list[str], option: str, value: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for resume in ([], ["--resume"]):
        result = CliRunner().invoke(main, [*command, "--data", "data", "--device", "cpu", option, value, *resume])
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '{option}': is empty (the current folder is '.')" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.parametrize("key", ["output", "cache_dir"])
def test_an_empty_folder_in_the_config_file_is_refused_naming_the_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       key: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "my.yaml").write_text(f"data: data\n{key}: ''\n")
    result = CliRunner().invoke(main, ["train", "--config", "my.yaml", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert f"is empty (the current folder is '.') ({key}: '' in my.yaml" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "my.yaml"]
