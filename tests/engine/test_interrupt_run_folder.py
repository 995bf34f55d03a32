"""A run killed (kill -9) or stopped by a full disk, then resumed: what its folder holds afterwards.

A kill -9 is played by a KeyboardInterrupt where the real one would strike, and the temporary file an atomic write
leaves behind when killed by writing it by hand (a kill runs no clean-up)."""
from __future__ import annotations

import csv
import errno
import hashlib
import os

import pytest
import torch

import coseg.engine.checkpoint as checkpoint
import coseg.engine.csv_log as csv_log
import coseg.engine.trainer as trainer
from coseg.engine import CheckpointError, Engine, load_training_state
from tests.engine.test_engine import make_engine
from tests.engine.toy import ToyTask

KILLED_WRITE = ".last.pt.tmp-k1ll3d.pt"  # what a kill -9 during the first write of last.pt leaves


def epochs_in_log(run) -> list[int]:
    return [int(r["epoch"]) for r in csv.DictReader(open(run / "log.csv"))]


def test_a_run_started_anew_removes_the_temporary_file_of_a_killed_write(tmp_path):
    """Killed while writing its first last.pt, a run has no checkpoint: ``--resume`` starts it anew (the trainers
    call ``fit`` without resume), and the half-written temporary file must not stay in the folder for good."""
    (tmp_path / KILLED_WRITE).write_bytes(b"half a checkpoint")
    engine, _ = make_engine(tmp_path, epochs=1)
    task = ToyTask()
    engine.fit(task, task.loader())
    assert not (tmp_path / KILLED_WRITE).exists()


def kill_after_the_log_row_of(epoch: int, monkeypatch) -> None:
    """Make ``Engine._save`` die (as a kill -9 would) at ``epoch``: its log row is written, its checkpoint not."""
    save = Engine._save

    def dying_save(self, at_epoch, *args, **kwargs):
        if at_epoch == epoch:
            raise KeyboardInterrupt("killed")
        return save(self, at_epoch, *args, **kwargs)

    monkeypatch.setattr(Engine, "_save", dying_save)


def test_the_log_loses_the_rows_of_epochs_after_the_checkpoint_even_when_the_resumed_run_trains_nothing(
        tmp_path, monkeypatch):
    """Killed between epoch 3's log row and its checkpoint, then resumed with a time budget already spent (the
    checkpoint's seconds): nothing is trained, and log.csv must not keep a row of an epoch no checkpoint holds."""
    with monkeypatch.context() as patch:
        kill_after_the_log_row_of(3, patch)
        engine, _ = make_engine(tmp_path, epochs=5, time_budget_s=1000)
        task = ToyTask()
        with pytest.raises(KeyboardInterrupt):
            engine.fit(task, task.loader())
    assert epochs_in_log(tmp_path) == [1, 2, 3]
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 2
    state["seconds"] = 1000.0  # as if epochs 1 and 2 had used the whole budget
    torch.save(state, tmp_path / "last.pt")

    engine, _ = make_engine(tmp_path, epochs=5, time_budget_s=1000)
    task = ToyTask()
    result = engine.fit(task, task.loader(), resume=True)
    assert result.stopped_by_time and result.epochs_run == 2 and task.steps == 0
    assert epochs_in_log(tmp_path) == [1, 2]


def digests(run) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir()}


class FullDiskFile:
    """A file on a full disk: every write fails with ENOSPC."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        pass

    def __enter__(self) -> "FullDiskFile":
        return self

    def __exit__(self, *exc) -> None:
        pass


def torch_save_on_a_full_disk(obj, f, *args, **kwargs) -> None:
    """What ``torch.save`` does on a full disk: its writer turns the file's OSError into an internal RuntimeError
    (a path fails in its C++ writer, a file object in the object's ``write``)."""
    try:
        if isinstance(f, (str, os.PathLike)):
            raise OSError(errno.ENOSPC, "No space left on device")
        f.write(b"PK\x03\x04")
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None


def full_disk_at(epoch: int, what: str, monkeypatch) -> None:
    """From ``epoch`` on, writing the log row (``what="log"``) or the training state (``"state"``) meets a full
    disk."""
    if what == "log":
        write = csv_log.write_text_atomic

        def full(path, text):
            if text.count("\n") > epoch:  # header + one row per epoch
                raise OSError(errno.ENOSPC, "No space left on device")
            write(path, text)

        monkeypatch.setattr(csv_log, "write_text_atomic", full)
        return
    save = trainer.save_training_state

    def save_until(path, state):
        if state["epoch"] >= epoch:
            monkeypatch.setattr(checkpoint, "open", FullDiskFile, raising=False)
            monkeypatch.setattr(checkpoint.torch, "save", torch_save_on_a_full_disk)
        save(path, state)

    monkeypatch.setattr(trainer, "save_training_state", save_until)


@pytest.mark.parametrize("what", ["log", "state"])
def test_a_full_disk_stops_the_run_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, what):
    engine, _ = make_engine(tmp_path, epochs=3)
    task = ToyTask()
    with monkeypatch.context() as patch:
        full_disk_at(1, what, patch)
        with pytest.raises(CheckpointError, match=r"cannot write the files of epoch 1 \(No space left on device.*\); "
                                                  r"the run stopped before its first checkpoint: free space, then "
                                                  r"train again"):
            engine.fit(task, task.loader())

    engine, _ = make_engine(tmp_path, epochs=3)
    task = ToyTask()
    engine.fit(task, task.loader())  # a second try, with space, writes epoch 1 anew
    before = digests(tmp_path)
    assert load_training_state(tmp_path / "last.pt")["epoch"] == 3

    engine, _ = make_engine(tmp_path, epochs=5)
    task = ToyTask()
    with monkeypatch.context() as patch:
        full_disk_at(4, what, patch)
        with pytest.raises(CheckpointError) as error:
            engine.fit(task, task.loader(), resume=True)
    message = str(error.value)
    assert f"{tmp_path}: cannot write the files of epoch 4 (No space left on device" in message
    assert "the run stopped, its checkpoint of epoch 3 (last.pt) left as it was: free space, then --resume" in message
    if what == "state":
        assert f"No space left on device: {tmp_path / 'last.pt'})" in message
    assert load_training_state(tmp_path / "last.pt")["epoch"] == 3
    assert digests(tmp_path)["last.pt"] == before["last.pt"]
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    engine, _ = make_engine(tmp_path, epochs=5)
    task = ToyTask()
    assert engine.fit(task, task.loader(), resume=True).epochs_run == 5
    assert epochs_in_log(tmp_path) == [1, 2, 3, 4, 5]


def test_a_full_disk_in_torch_save_is_an_os_error_naming_the_file(tmp_path, monkeypatch):
    """Not the RuntimeError with torch's internal message ('unexpected pos ...'); the file at the path is kept."""
    checkpoint.save_training_state(tmp_path / "last.pt", {"x": torch.ones(3)})
    before = (tmp_path / "last.pt").read_bytes()
    monkeypatch.setattr(checkpoint.torch, "save", torch_save_on_a_full_disk)
    monkeypatch.setattr(checkpoint, "open", FullDiskFile, raising=False)
    with pytest.raises(OSError) as error:
        checkpoint.save_training_state(tmp_path / "last.pt", {"x": torch.zeros(1000)})
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / "last.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"] and (tmp_path / "last.pt").read_bytes() == before
