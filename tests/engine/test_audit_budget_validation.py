"""A time budget that an epoch's validation spends ends the run with that epoch: no further epoch of one step at a
learning rate of 0, validated again past the budget, and the same end a resume from that epoch's checkpoint finds."""
from __future__ import annotations

import csv
from types import SimpleNamespace

import torch
from safetensors import safe_open

from coseg.engine import DistInfo, Engine, trainer
from tests.engine.toy import ToyModel, ToyTask


class SlowValidation(ToyTask):
    """Validation that takes ``seconds`` of the engine's clock (``clock``: a list holding its time)."""

    def __init__(self, clock: list[float], seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def validate(self, model) -> dict[str, float]:
        self.clock[0] += self.seconds
        return super().validate(model)


def engine(tmp_path, epochs: int = 100) -> Engine:
    torch.manual_seed(0)
    model = ToyModel()
    return Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), tmp_path, dist=DistInfo(), epochs=epochs,
                  select_metric="acc", quiet=True, time_budget_s=500.0)


def test_a_budget_spent_by_validation_ends_the_run_with_that_epoch(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(trainer, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    task = SlowValidation(clock, seconds=600.0)  # training takes no time; the first validation spends the budget
    result = engine(tmp_path).fit(task, task.loader())
    assert result.stopped_by_time and result.epochs_run == 1 and task.steps == 4  # was: epoch 2, of one step
    assert [r["epoch"] for r in csv.DictReader(open(tmp_path / "log.csv"))] == ["1"]
    with safe_open(str(tmp_path / "last.safetensors"), "pt") as f:
        assert f.metadata()["finished"] == "time" and f.metadata()["epoch"] == "1"

    resumed = SlowValidation(clock, seconds=600.0)
    again = engine(tmp_path).fit(resumed, resumed.loader(), resume=True)
    assert again.stopped_by_time and again.epochs_run == 1 and resumed.steps == 0


def test_a_run_whose_last_epoch_spends_the_budget_ends_with_its_epochs(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(trainer, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    task = SlowValidation(clock, seconds=300.0)  # the second validation, the last epoch's, spends the budget
    result = engine(tmp_path, epochs=2).fit(task, task.loader())
    assert not result.stopped_by_time and result.epochs_run == 2 and task.steps == 8
    with safe_open(str(tmp_path / "last.safetensors"), "pt") as f:
        assert f.metadata()["finished"] == "epochs"
