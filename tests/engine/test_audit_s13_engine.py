"""Audit (s13) of the engine: a resume with nothing left to train ends the run finished, and the session's closing
images/s is the training speed log.csv gives (validation left out)."""
from __future__ import annotations

import csv

import pytest
import torch
from safetensors import safe_open

import coseg.engine.trainer as trainer
from apps.cli import fit_summary
from coseg.engine import DistInfo, Engine
from coseg.engine.checkpoint import load_training_state
from tests.engine.test_audit_s11_engine import Clock
from tests.engine.test_audit_s12_engine import SlowStartTask
from tests.engine.toy import ToyModel, ToyTask


def engine(run, epochs: int, **options) -> Engine:
    torch.manual_seed(0)
    model = ToyModel()
    return Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), run, dist=DistInfo(), epochs=epochs,
                  select_metric="acc", quiet=True, **options)


def finished(run) -> tuple[str, str]:
    """What ``last.safetensors`` and ``last.pt`` say of the run's end."""
    with safe_open(str(run / "last.safetensors"), "pt") as f:
        return f.metadata()["finished"], load_training_state(run / "last.pt")["finished"]


def interrupted_in_epoch_3(run) -> None:
    """A run of 4 epochs (4 steps each) killed in its third: its checkpoint of epoch 2 is unfinished."""
    task = ToyTask(crash_at_step=11)
    with pytest.raises(KeyboardInterrupt):
        engine(run, epochs=4).fit(task, task.loader())
    assert finished(run) == ("no", "no")


@pytest.mark.parametrize("how", ["epochs", "time"])
def test_a_resume_with_nothing_left_to_train_ends_the_run_finished(tmp_path, how):
    """Was: resumed with --epochs 2 (or a time budget already spent), it trained nothing and the run's files kept
    `finished: no`, which the report tells as an unfinished run."""
    interrupted_in_epoch_3(tmp_path)
    log = (tmp_path / "log.csv").read_bytes()
    options = {"epochs": 2} if how == "epochs" else {"epochs": 4, "time_budget_s": 1e-6}
    task = ToyTask()
    result = engine(tmp_path, **options).fit(task, task.loader(), resume=True, before_write=pytest.fail)
    assert task.steps == 0 and not result.history and result.epochs_run == 2
    assert finished(tmp_path) == (how, how)
    assert (tmp_path / "log.csv").read_bytes() == log
    assert fit_summary(result).startswith("nothing left to train: the run had reached epoch 2")
    more = engine(tmp_path, epochs=3).fit(task, task.loader(), resume=True)  # a larger --epochs still trains on
    assert [row["epoch"] for row in more.history] == [3] and finished(tmp_path) == ("epochs", "epochs")


def test_a_resume_that_trains_on_is_unfinished_until_it_ends(tmp_path):
    interrupted_in_epoch_3(tmp_path)
    task = ToyTask(crash_at_step=1)
    with pytest.raises(KeyboardInterrupt):
        engine(tmp_path, epochs=4).fit(task, task.loader(), resume=True)
    assert finished(tmp_path) == ("no", "no")


class SlowValidationTask(SlowStartTask):
    """:class:`SlowStartTask` (13 s an epoch of 64 images, 48 of them in its last 3 s) whose validation takes 100 s."""

    def validate(self, model):
        self.clock.now += 100.0
        return super().validate(model)


def test_the_sessions_images_per_s_is_the_training_speed_of_log_csv(tmp_path, monkeypatch):
    """Was: 128 images / 226 s = 0.57 images/s, the validations' and first steps' time counted, against 16 images/s
    in every row of log.csv."""
    clock = Clock()
    monkeypatch.setattr(trainer.time, "perf_counter", clock)
    task = SlowValidationTask(clock)
    result = engine(tmp_path, epochs=2).fit(task, task.loader())
    with open(tmp_path / "log.csv", newline="") as f:
        assert [float(row["images_per_s"]) for row in csv.DictReader(f)] == [16.0, 16.0]
    assert result.images_per_s == pytest.approx(16.0) and result.train_seconds == pytest.approx(6.0)
    assert result.seconds == pytest.approx(226.0)
    assert "(training: 16.0 images/s, validation left out)" in fit_summary(result)


def test_a_run_at_its_epochs_and_past_its_budget_needs_both_options_larger(tmp_path):
    """Was: "(a larger --minutes trains on)" for a run that had trained its 2 epochs, resumed with a budget it had
    spent: a larger --minutes alone trained nothing either."""
    task = ToyTask()
    engine(tmp_path, epochs=2).fit(task, task.loader())
    result = engine(tmp_path, epochs=2, time_budget_s=1e-6).fit(task, task.loader(), resume=True)
    assert fit_summary(result) == ("nothing left to train: the run had reached epoch 2 and its time budget (a larger "
                                   "--epochs and --minutes train on)")
    assert finished(tmp_path) == ("epochs", "epochs")
    result = engine(tmp_path, epochs=3, time_budget_s=1e-6).fit(task, task.loader(), resume=True)
    assert fit_summary(result).endswith("(a larger --minutes trains on)") and not result.history
