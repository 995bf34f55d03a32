"""torchrun's environment variables set by hand or left from elsewhere (``WORLD_SIZE`` without ``RANK``, a value
that is no number): one clear error naming the variable, also through a command's error handling (which asks for the
rank to tell the error), not ``Error: RANK`` or a traceback."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from apps.cli import friendly_errors
from coseg.engine.distributed import launched_rank, setup_distributed, world_size


@pytest.fixture(autouse=True)
def no_torchrun(monkeypatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


@click.command()
@friendly_errors
def joins() -> None:
    setup_distributed("cpu")


def test_world_size_without_rank_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(joins)
    assert result.exit_code == 1
    assert result.output.startswith("Error: the environment variable WORLD_SIZE=2 asks for 2 processes, but RANK "
                                    "(this process's) is not set: start the command with torchrun"), result.output


@pytest.mark.parametrize("name, value", [("WORLD_SIZE", "two"), ("WORLD_SIZE", "-1"), ("RANK", "x"),
                                         ("LOCAL_RANK", "")])
def test_a_variable_that_is_no_number_is_named(monkeypatch, name, value):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")  # rank 0 tells its errors at once
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(joins)
    assert result.exit_code == 1 and not isinstance(result.exception, ValueError), result.exception
    assert result.output == (f"Error: the environment variable {name}='{value}' is not a whole number >= 0; torchrun "
                             "sets it for each process it starts: unset it to run in one process\n")
    assert launched_rank() == 0  # asked for while the error is told: no second error


def test_world_size_one_and_unset_are_a_single_process(monkeypatch):
    assert world_size() == 1 and setup_distributed("cpu").world_size == 1
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    info = setup_distributed("cpu")
    assert (info.rank, info.world_size, info.distributed, launched_rank()) == (0, 1, False, 0)
