"""A run killed (kill -9) at any write of an epoch's files, then resumed: ``best.safetensors`` (and the file its
model writes beside it, as retrieval's learner writes ``best.loss.safetensors``) is the model of the best epoch
that ``last.pt`` and ``log.csv`` record, also when the redone epoch turns out worse than the lost one (a time budget
or a data order that differs).

A kill -9 is played by a KeyboardInterrupt instead of the write (an atomic write leaves the file as it was)."""
from __future__ import annotations

import csv
import errno
from pathlib import Path
from typing import Optional

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import coseg.engine.trainer as trainer
from coseg.engine import CheckpointError, DistInfo, Engine, load_training_state
from tests.engine.toy import ToyModel, ToyTask

KILLED_EPOCH = 3


class PairedModel(ToyModel):
    """Saves, first, a file of its own beside the model file, with the same metadata (as retrieval's learner saves
    its loss's state)."""

    def save(self, path: Path, metadata: Optional[dict[str, str]] = None) -> None:
        super().save(path.with_suffix(".loss.safetensors"), metadata)
        super().save(path, metadata)


class ScriptedTask(ToyTask):
    """Validation scores by call: epochs 1–3 score 0.5, 0.6, 0.9; a redone epoch 3 and epoch 4 score less than
    0.6. Keeps the latest model validated at each epoch."""

    SCORES = (0.5, 0.6, 0.9, 0.55, 0.58)

    def __init__(self, before: Optional["ScriptedTask"] = None, epoch: int = 0) -> None:
        """A task going on after ``before``'s calls, from epoch ``epoch`` (a resumed run's)."""
        super().__init__()
        self.calls = before.calls if before else 0
        self.epoch = epoch
        self.validated: dict[int, dict[str, torch.Tensor]] = dict(before.validated) if before else {}

    def validate(self, model) -> dict[str, float]:
        self.epoch += 1
        self.validated[self.epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        self.calls += 1
        return {"acc": self.SCORES[self.calls - 1]}


def make_engine(run: Path) -> Engine:
    torch.manual_seed(0)
    model = PairedModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return Engine(model, opt, run, dist=DistInfo(), epochs=4, select_metric="acc", quiet=True)


def kill_writing(name: str, monkeypatch) -> None:
    """Make the write of ``name`` in epoch :data:`KILLED_EPOCH` die as a kill -9 would, before the file is
    replaced."""
    save_model, save_state = ToyModel.save, trainer.save_training_state

    def dying_model_save(self, path, metadata=None):
        if path.name == name and metadata["epoch"] == str(KILLED_EPOCH):
            raise KeyboardInterrupt("killed")
        save_model(self, path, metadata)

    def dying_state_save(path, state):
        if path.name == name and state["epoch"] == KILLED_EPOCH:
            raise KeyboardInterrupt("killed")
        save_state(path, state)

    monkeypatch.setattr(ToyModel, "save", dying_model_save)
    monkeypatch.setattr(trainer, "save_training_state", dying_state_save)


def metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return f.metadata()


def assert_files_agree(run: Path, validated: dict[int, dict[str, torch.Tensor]]) -> None:
    """The model files are the models of the best and the last epoch that ``last.pt`` and ``log.csv`` record."""
    state = load_training_state(run / "last.pt")
    rows = {int(r["epoch"]): r for r in csv.DictReader(open(run / "log.csv"))}
    assert sorted(rows) == list(range(1, state["epoch"] + 1))
    assert float(rows[state["best_epoch"]]["val_acc"]) == pytest.approx(state["best"])
    for stem, epoch in (("best", state["best_epoch"]), ("last", state["epoch"])):
        for name in (f"{stem}.safetensors", f"{stem}.loss.safetensors"):
            assert metadata(run / name)["epoch"] == str(epoch), name
            assert float(metadata(run / name)["acc"]) == pytest.approx(float(rows[epoch]["val_acc"])), name
            for key, value in load_file(str(run / name)).items():
                torch.testing.assert_close(value, validated[epoch][key], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["last.pt", "best.loss.safetensors", "best.safetensors", "last.loss.safetensors",
                                  "last.safetensors"])
def test_after_a_kill_at_any_write_the_best_model_file_is_the_best_epoch_recorded(tmp_path, monkeypatch, name):
    """Epoch 3 is the best so far (0.9) when its writes are killed; the resumed run either goes on from it or
    redoes it, worse (0.55): then epoch 2 (0.6) stays the best, and best.safetensors must be its model, not the lost
    epoch 3's that no log row or checkpoint records."""
    task = ScriptedTask()
    with monkeypatch.context() as patch:
        kill_writing(name, patch)
        with pytest.raises(KeyboardInterrupt):
            make_engine(tmp_path).fit(task, task.loader())
    assert not list(tmp_path.glob(".*tmp*")), "an atomic write left its temporary file"

    epochs_done = load_training_state(tmp_path / "last.pt")["epoch"]
    resumed = ScriptedTask(task, epoch=epochs_done)
    result = make_engine(tmp_path).fit(resumed, resumed.loader(), resume=True)
    assert result.epochs_run == 4
    assert result.best_epoch == (KILLED_EPOCH if epochs_done == KILLED_EPOCH else 2)
    assert_files_agree(tmp_path, resumed.validated)


def test_a_full_disk_writing_the_best_model_file_stops_the_run_and_the_resume_writes_it(tmp_path, monkeypatch):
    """Epoch 3's last.pt is written, its best.safetensors meets a full disk: the message says the checkpoint is
    written, and the resumed run goes on from epoch 3 with its model files written."""
    task = ScriptedTask()
    save = ToyModel.save

    def full_disk_save(self, path, metadata=None):
        if path.name == "best.safetensors" and metadata["epoch"] == str(KILLED_EPOCH):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        save(self, path, metadata)

    with monkeypatch.context() as patch:
        patch.setattr(ToyModel, "save", full_disk_save)
        with pytest.raises(CheckpointError) as error:
            make_engine(tmp_path).fit(task, task.loader())
    assert str(error.value) == (f"{tmp_path}: cannot write the files of epoch 3 (No space left on device: "
                                f"{tmp_path / 'best.safetensors'}); the run stopped, its checkpoint (last.pt) written: "
                                "free space, then --resume, which writes its model files")
    resumed = ScriptedTask(task, epoch=KILLED_EPOCH)
    assert make_engine(tmp_path).fit(resumed, resumed.loader(), resume=True).best_epoch == KILLED_EPOCH
    assert_files_agree(tmp_path, resumed.validated)
