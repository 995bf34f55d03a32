"""Audit (s11) of the engine as researchers drive it: ``adamw`` called as torch's optimizers are, and a run under a
time budget resumed to the uninterrupted run's weights and log (a clock that moves only while training)."""
from __future__ import annotations

import csv
import re

import pytest
import torch

import coseg.engine.trainer as trainer
from coseg.engine import CheckpointError, DistInfo, Engine, adamw
from tests.engine.toy import ToyModel, ToyTask


@pytest.mark.parametrize("given", ["parameters", "tensor group"])
def test_adamw_takes_parameters_as_torchs_optimizers_do(given):
    model = torch.nn.Linear(3, 2)
    reference = torch.nn.Linear(3, 2)
    reference.load_state_dict(model.state_dict())
    # was: IndexError (too many indices for tensor), or a group of the weight's rows
    opt = (adamw(model.parameters(), lr=0.1, weight_decay=0.01) if given == "parameters" else
           adamw([{"params": model.weight}, {"params": model.bias, "lr": 0.2}], lr=0.1, weight_decay=0.01))
    ref = torch.optim.AdamW([{"params": [reference.weight]}, {"params": [reference.bias], "lr": 0.2}]
                            if given == "tensor group" else reference.parameters(), lr=0.1, weight_decay=0.01)
    for o, m in ((opt, model), (ref, reference)):
        m(torch.ones(4, 3)).square().sum().backward()
        o.step()
    assert [len(g["params"]) for g in opt.param_groups] == [len(g["params"]) for g in ref.param_groups]
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("option, value, words", [
    ("grad_clip", -1.0, r"grad_clip must be >= 0 \(0 or None: no clipping\), got -1.0"),
    ("grad_clip", float("nan"), r"grad_clip must be >= 0"),
    ("warmup", 1.5, r"warmup must be in \[0, 1\) \(a fraction of the run\), got 1.5"),
    ("warmup", -0.1, r"warmup must be in \[0, 1\)"),
    ("lr_schedule", "linear", r"unknown lr schedule 'linear'; valid: constant, cosine"),
])
def test_a_bad_schedule_or_clipping_is_refused_before_anything_is_written(tmp_path, option, value, words):
    """Was: a negative grad_clip turned every gradient around (clip_grad_norm_'s factor < 0) and a warm-up past the
    run's end never reached the learning rate, silently; an unknown schedule failed at the first step, after
    ``before_write`` (the trainers' config.yaml)."""
    model = ToyModel()
    with pytest.raises(ValueError, match=words):
        Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), tmp_path / "run", dist=DistInfo(), epochs=2,
               quiet=True, **{option: value})
    assert not (tmp_path / "run").exists()


class Clock:
    """``time.perf_counter`` of a run whose steps take 1 s and validations 0.5 s (nothing else takes time)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TimedTask(ToyTask):
    def __init__(self, clock: Clock, crash_at_step=None) -> None:
        super().__init__(crash_at_step=crash_at_step)
        self.clock = clock

    def train_step(self, model, batch, device):
        self.clock.now += 1.0
        return super().train_step(model, batch, device)

    def validate(self, model):
        self.clock.now += 0.5
        return super().validate(model)


def budgeted(run) -> tuple[Engine, ToyModel]:
    torch.manual_seed(0)
    model = ToyModel()
    opt = adamw([{"params": model.parameters()}], lr=0.1, weight_decay=0.01)
    return Engine(model, opt, run, dist=DistInfo(), epochs=50, select_metric="acc", quiet=True, ema_decay=0.9,
                  time_budget_s=22.3), model


def test_a_budgeted_run_resumed_ends_as_the_uninterrupted_one(tmp_path, monkeypatch):
    """4 steps of 1 s and a validation of 0.5 s per epoch: the schedule follows that time, the budget of 22.3 s ends
    the run with epoch 5's validation; a run killed in epoch 3 and resumed (after a pause) must equal it."""
    clock = Clock()
    monkeypatch.setattr(trainer.time, "perf_counter", clock)
    full, full_model = budgeted(tmp_path / "full")
    task = TimedTask(clock)
    result = full.fit(task, task.loader())
    assert result.epochs_run == 5 and result.stopped_by_time

    first, _ = budgeted(tmp_path / "cut")
    task = TimedTask(clock, crash_at_step=10)
    with pytest.raises(KeyboardInterrupt):
        first.fit(task, task.loader())
    clock.now += 3600.0  # a pause between the kill and the resume is not training time
    resumed, resumed_model = budgeted(tmp_path / "cut")
    task = TimedTask(clock)
    again = resumed.fit(task, task.loader(), resume=True)
    assert (again.epochs_run, again.best_epoch, again.stopped_by_time) == (5, result.best_epoch, True)
    for a, b in zip([*full_model.state_dict().values(), *full.ema.state_dict().values()],
                    [*resumed_model.state_dict().values(), *resumed.ema.state_dict().values()]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    log = [list(csv.reader(open(run / "log.csv"))) for run in (tmp_path / "full", tmp_path / "cut")]
    assert log[0] == log[1]


def test_resume_with_other_parameter_groups_is_a_checkpoint_error_naming_the_file(tmp_path):
    torch.manual_seed(0)
    model = ToyModel()
    task = ToyTask()
    Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), tmp_path, dist=DistInfo(), epochs=1,
           select_metric="acc", quiet=True).fit(task, task.loader())
    groups = [{"params": model.net[0].parameters(), "name": "encoder"}, {"params": model.net[3].parameters()}]
    engine = Engine(model, torch.optim.SGD(groups, lr=0.1), tmp_path, dist=DistInfo(), epochs=2, select_metric="acc",
                    quiet=True)
    with pytest.raises(CheckpointError, match=r"last.pt: its optimizer state does not fit this optimizer \(loaded "
                                              r"state dict has a different number of parameter groups\); resume it"):
        engine.fit(task, task.loader(), resume=True)  # was: a ValueError naming neither the file nor what to do


@pytest.mark.parametrize("resave, words", [
    (lambda text: text.replace(",", ";").encode(), r"not a log of this toolkit: no 'epoch' column among 'epoch;lr;"),
    (lambda text: text.replace("val_acc", "val_acc\xe9").encode("cp1252"), r"cannot read this log \('utf-8' codec"),
])
def test_a_log_resaved_by_a_spreadsheet_is_refused_not_emptied_on_resume(tmp_path, resave, words):
    """Was: a log.csv re-saved with semicolons (a spreadsheet's CSV in many locales) lost every row on resume (none
    has an 'epoch' value), and one not in UTF-8 failed with the codec's message, naming no file."""
    torch.manual_seed(0)
    model = ToyModel()
    task = ToyTask()
    Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), tmp_path, dist=DistInfo(), epochs=1,
           select_metric="acc", quiet=True).fit(task, task.loader())
    log = tmp_path / "log.csv"
    log.write_bytes(resave(log.read_text()))
    before = log.read_bytes()
    engine = Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), tmp_path, dist=DistInfo(), epochs=2,
                    select_metric="acc", quiet=True)
    with pytest.raises(ValueError, match=f"^{re.escape(str(log))}: {words}"):
        engine.fit(task, task.loader(), resume=True)
    assert log.read_bytes() == before


def test_a_select_metric_validation_does_not_give_is_named(tmp_path):
    """Was: every epoch taken as the best (as with no validation), best.safetensors silently the newest model."""
    torch.manual_seed(0)
    model = ToyModel()
    task = ToyTask()
    engine = Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), tmp_path, dist=DistInfo(), epochs=2,
                    select_metric="J", quiet=True)
    with pytest.raises(ValueError, match=r"select_metric 'J' is not among the validation metrics \(acc\)"):
        engine.fit(task, task.loader())
    assert not (tmp_path / "last.pt").exists()
