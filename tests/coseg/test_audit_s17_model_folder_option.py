"""A run folder given where a model file goes (``--checkpoint runs/mine``, ``coseg ensemble runs/a runs/b``) is a
usage error naming the file to give, the run's best.safetensors, where click said only "File 'runs/mine' is a
directory."."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from apps.cli import main


@pytest.mark.parametrize("command", [["evaluate", "--checkpoint"], ["predict", "--checkpoint"],
                                     ["retrieval", "evaluate", "--checkpoint"], ["ensemble"]])
def test_a_run_folder_given_as_the_model_names_its_best_safetensors(tmp_path, command):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.safetensors").write_bytes(b"model")
    result = CliRunner().invoke(main, [*command, str(run), str(run / "best.safetensors")])
    assert result.exit_code == 2
    assert f"{run} is a folder; a run's model is its best.safetensors: {run / 'best.safetensors'}" in result.output
    (run / "best.safetensors").unlink()
    result = CliRunner().invoke(main, [*command, str(run), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2 and f"{run} is a folder; a run's model is its best.safetensors\n" in result.output
