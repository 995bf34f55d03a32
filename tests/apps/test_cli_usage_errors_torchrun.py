"""click's own usage errors under torchrun follow the commands' errors: told at once by rank 0 and a single process,
as click shows them; held and then told naming the process by another, with the same usage line and exit code."""
from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

import coseg.engine.distributed as distributed
from apps.cli import friendly_errors, main

MISTAKES = {
    "missing folder": ["split", "--data", "/does/not/exist"],
    "missing folder found by the command": ["train", "--data", "/does/not/exist", "--output", "out"],
    "unknown option": ["split", "--bogus"],
    "missing option": ["evaluate"],
    "refused by a callback": ["split", "--data", ".", "--test-fraction", "nan"],
    "unknown command": ["nosuch"],
    "unknown option of the group": ["--bogus"],
    "retrieval subcommand": ["retrieval", "train", "--bogus"],
}


@pytest.fixture
def events(monkeypatch) -> list[str]:
    """What the process did, in order: "held N" for a wait of N seconds (recorded, not slept), "shown" each time
    click printed part of an error (its usage line and help hint, its "Error:" line)."""
    happened: list[str] = []
    echo = click.exceptions.echo

    def shown(*args: Any, **kwargs: Any) -> None:
        happened.append("shown")
        echo(*args, **kwargs)

    monkeypatch.setattr(distributed.time, "sleep", lambda seconds: happened.append(f"held {seconds}"))
    monkeypatch.setattr(distributed, "_error_held_since", None)
    monkeypatch.setattr(click.exceptions, "echo", shown)
    return happened


def launched(monkeypatch, rank: int | None) -> None:
    """Make this process rank ``rank`` of a 2-process torchrun run, or a single process (``None``)."""
    if rank is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
        monkeypatch.setenv("RANK", "1")  # left from elsewhere: only torchrun's WORLD_SIZE > 1 makes it a rank
    else:
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))


def run(monkeypatch, tmp_path, rank: int | None, args: list[str]) -> Result:
    launched(monkeypatch, rank)
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(main, args, prog_name="coseg")


def test_a_bad_data_path_is_held_then_told_naming_the_process_by_rank_1(monkeypatch, tmp_path, events):
    result = run(monkeypatch, tmp_path, 1, ["split", "--data", "/does/not/exist"])
    assert result.exit_code == 2
    assert result.output == ("Usage: coseg split [OPTIONS]\nTry 'coseg split --help' for help.\n\n"
                             "Error: process 1: Invalid value for '--data': Directory '/does/not/exist' does not "
                             "exist.\n")
    assert events == [f"held {distributed.OTHER_RANK_ERROR_DELAY_S}", "shown", "shown"]


@pytest.mark.parametrize("rank", [0, None], ids=["rank 0", "single process"])
def test_a_bad_data_path_is_told_at_once_as_click_shows_it(monkeypatch, tmp_path, events, rank):
    result = run(monkeypatch, tmp_path, rank, ["split", "--data", "/does/not/exist"])
    assert result.exit_code == 2
    assert result.output == ("Usage: coseg split [OPTIONS]\nTry 'coseg split --help' for help.\n\n"
                             "Error: Invalid value for '--data': Directory '/does/not/exist' does not exist.\n")
    assert "held" not in " ".join(events)


@pytest.mark.parametrize("args", MISTAKES.values(), ids=MISTAKES.keys())
def test_rank_1_tells_what_rank_0_does_naming_the_process(monkeypatch, tmp_path, events, args):
    alone = run(monkeypatch, tmp_path, None, args)
    first = run(monkeypatch, tmp_path, 0, args)
    assert "held" not in " ".join(events)
    events.clear()
    other = run(monkeypatch, tmp_path, 1, args)
    assert alone.exit_code == first.exit_code == other.exit_code == 2
    assert alone.output == first.output and first.output.count("Error: ") == 1
    assert other.output == first.output.replace("Error: ", "Error: process 1: ")
    assert events == [f"held {distributed.OTHER_RANK_ERROR_DELAY_S}", "shown", "shown"]


def test_ctrl_c_while_holding_ends_silently(monkeypatch, tmp_path, events):
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(distributed.time, "sleep", interrupted)
    result = run(monkeypatch, tmp_path, 1, ["split", "--data", "/does/not/exist"])
    assert (result.exit_code, result.output) == (130, "")


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"], ["split", "--help"], ["retrieval", "-h"]])
def test_help_and_version_are_shown_at_once_by_every_process(monkeypatch, tmp_path, events, args):
    first = run(monkeypatch, tmp_path, 0, args)
    other = run(monkeypatch, tmp_path, 1, args)
    assert (first.exit_code, other.exit_code, other.output) == (0, 0, first.output)
    assert first.output and not events


def test_a_commands_own_error_is_told_once(monkeypatch, tmp_path, events):
    """An error :func:`friendly_errors` already told, naming the process, is not named twice on its way out."""
    @click.command()
    @friendly_errors
    def fail() -> None:
        raise ValueError("no such data")

    monkeypatch.setitem(main.commands, "fail", fail)
    result = run(monkeypatch, tmp_path, 1, ["fail"])
    assert (result.exit_code, result.output) == (1, "Error: process 1: no such data\n")
    assert events.count(f"held {distributed.OTHER_RANK_ERROR_DELAY_S}") == 1
