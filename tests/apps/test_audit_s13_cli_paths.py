"""Audit (s13) of the `coseg` commands' path options: a quoted `~` (the shell leaves it) is the home folder in every
one of them, as it is in a config file's paths (was: only the trainers' config fields expanded it)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from apps.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder of its own (``~``) holding a file and a folder, and another current folder."""
    home = tmp_path / "home"
    (home / "folder").mkdir(parents=True)
    (home / "file.safetensors").write_bytes(b"")
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return home


def path_parameters(group: click.Group = main, prefix: str = "") -> Iterator[tuple[str, click.Parameter]]:
    """Every path option and argument of the `coseg` commands, those of its `retrieval` group included."""
    with click.Context(group) as ctx:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if isinstance(command, click.Group):
                yield from path_parameters(command, f"{prefix}{name} ")
                continue
            for param in command.params:
                if isinstance(param.type, click.Path):
                    yield f"{prefix}{name} {param.name}", param


def test_every_path_option_takes_a_quoted_tilde_as_the_home_folder(home: Path) -> None:
    """Was: `--data "~/folder"` was "Directory '~/folder' does not exist." (and `--output "~/x"` made ./~/x)."""
    checked = []
    for where, param in path_parameters():
        name = "folder" if param.type.dir_okay else "file.safetensors"
        with click.Context(main) as ctx:
            converted = param.type.convert(f"~/{name}", param, ctx)
        assert Path(converted) == home / name, where
        checked.append(where)
    assert {"train config_file", "evaluate data", "evaluate masks", "evaluate splits", "predict input_dir",
            "predict output", "predict overlays", "split output", "ensemble models", "report run_dir",
            "report output", "demo output", "retrieval train config_file", "retrieval evaluate data",
            "retrieval export input_dir", "retrieval search index_dir", "retrieval search queries"} <= set(checked)


def test_quoted_tilde_paths_on_the_command_line(home: Path) -> None:
    """`coseg split --data "~/set"` reads the home folder's set and writes its splits there; `coseg report "~/run"`
    reports the home folder's run; `coseg train --config "~/my.yaml"` reads the home folder's file."""
    rng = np.random.default_rng(0)
    for group in ("a", "b", "c"):
        (home / "set" / "images" / group).mkdir(parents=True)
        (home / "set" / "masks" / group).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                home / "set" / "images" / group / f"{i}.jpg")
            Image.fromarray(np.full((16, 16), 255, np.uint8)).save(home / "set" / "masks" / group / f"{i}.png")
    runner = CliRunner()
    result = runner.invoke(main, ["split", "--data", "~/set", "--output", "~/splits.json", "--layout", "folders"])
    assert result.exit_code == 0, result.output
    assert set(json.loads((home / "splits.json").read_text())) >= {"train", "test"}
    assert not Path("~").exists()

    (home / "my.yaml").write_text("data: ~/set\nepochs: 0\n")
    result = runner.invoke(main, ["train", "--config", "~/my.yaml", "--output", "~/run"])
    assert result.exit_code == 2 and "epochs must be >= 1" in result.output, result.output  # the file was read

    (home / "run").mkdir()
    (home / "run" / "log.csv").write_text("epoch,train_loss,seconds\n1,0.5,2.0\n")
    result = runner.invoke(main, ["report", "~/run", "--quiet"])
    assert result.exit_code == 0 and (home / "run" / "report.html").is_file(), result.output
    assert not Path("~").exists()
