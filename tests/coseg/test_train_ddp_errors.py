"""Errors under torchrun: one every process meets is told once, by rank 0; one only another process meets is still
told, naming the process; Ctrl-C, which torchrun passes on to every process, is told by rank 0 alone."""
from __future__ import annotations

import sys

import click
import pytest
from click.testing import CliRunner

import coseg.engine.distributed as distributed
from apps.cli import friendly_errors
from tests.coseg.test_train_ddp import run, torchrun_train


def failing(error: BaseException) -> click.Command:
    @click.command()
    @friendly_errors
    def train() -> None:
        raise error

    return train


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The seconds the process waited before telling its error (recorded, not slept)."""
    slept: list[float] = []
    monkeypatch.setattr(distributed.time, "sleep", slept.append)
    monkeypatch.setattr(distributed, "_error_held_since", None)
    return slept


@pytest.mark.parametrize("rank, told", [(0, "Error: no such data\n"), (1, "Error: process 1: no such data\n")])
def test_an_error_is_told_at_once_by_rank_0_and_late_naming_the_process_by_another(monkeypatch, waits, rank, told):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    result = CliRunner().invoke(failing(ValueError("no such data")))
    assert (result.exit_code, result.output) == (1, told)
    assert waits == ([distributed.OTHER_RANK_ERROR_DELAY_S] if rank else [])


def test_a_single_process_tells_its_error_at_once(monkeypatch, waits):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "1")  # left from elsewhere: only torchrun's WORLD_SIZE > 1 makes it a rank
    result = CliRunner().invoke(failing(ValueError("no such data")))
    assert (result.exit_code, result.output, waits) == (1, "Error: no such data\n", [])


def test_ctrl_c_is_told_by_rank_0_alone(monkeypatch, waits):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    result = CliRunner().invoke(failing(KeyboardInterrupt()))
    assert (result.exit_code, result.output, waits) == (130, "", [])


@pytest.mark.ddp
@pytest.mark.slow
def test_an_error_every_process_meets_under_torchrun_is_told_once(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.csv").write_text("epoch\n1\n")  # a run is there: every process refuses the folder
    proc, _ = torchrun_train(tmp_path, members=1)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode != 0
    assert errors == [f"Error: {tmp_path / 'run'} already holds a run (log.csv); --resume continues it, --overwrite "
                      "replaces it, or choose another --output"], proc.stderr[-3000:]


LONE_ERROR = """
import click
import torch.distributed as dist

from apps.cli import friendly_errors
from coseg.engine import distributed_run


@click.command()
@friendly_errors
def train() -> None:
    with distributed_run("cpu") as info:
        if info.rank == 1:
            raise ValueError("only process 1 meets this")
        dist.barrier()  # rank 0 waits for process 1 in a collective, as in a training step


train()
"""


@pytest.mark.ddp
@pytest.mark.slow
def test_an_error_only_another_process_meets_under_torchrun_is_told_naming_it(tmp_path):
    script = tmp_path / "lone_error.py"
    script.write_text(LONE_ERROR)
    proc = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
               tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode != 0
    assert errors == ["Error: process 1: only process 1 meets this"], proc.stderr[-3000:]
