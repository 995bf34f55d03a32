"""What a run's files say about it: a learning-rate column per parameter group in log.csv, whether the run
finished in last.safetensors, and a resumed run with nothing left to train writes nothing (before_write)."""
from __future__ import annotations

import csv
import re

import pytest
import torch
from safetensors import safe_open

from coseg.engine import DistInfo, Engine, lr_factor
from coseg.engine.trainer import lr_columns
from tests.engine.toy import ToyModel, ToyTask


def engine_with(tmp_path, epochs, groups=None, **kw) -> Engine:
    torch.manual_seed(0)
    model = ToyModel()
    opt = torch.optim.SGD(groups(model) if groups else model.parameters(), lr=0.1)
    return Engine(model, opt, tmp_path, dist=DistInfo(), epochs=epochs, select_metric="acc", **{"quiet": True, **kw})


def finished(folder) -> str:
    with safe_open(str(folder / "last.safetensors"), "pt") as f:
        return f.metadata()["finished"]


def two_groups(model: ToyModel, names=("encoder", None)) -> list[dict]:
    first, second = model.net[0], model.net[3]
    return [{"params": first.parameters(), "lr": 0.01, **({"name": names[0]} if names[0] else {})},
            {"params": second.parameters(), "lr": 0.1, **({"name": names[1]} if names[1] else {})}]


def test_lr_columns_name_each_group():
    model = ToyModel()
    assert lr_columns(torch.optim.SGD(model.parameters(), lr=0.1)) == ["lr"]
    assert lr_columns(torch.optim.SGD(two_groups(model), lr=0.1)) == ["lr_encoder", "lr"]
    assert lr_columns(torch.optim.SGD(two_groups(model, (None, None)), lr=0.1)) == ["lr0", "lr1"]
    with pytest.raises(ValueError, match=r"share a name \(head\)"):
        lr_columns(torch.optim.SGD(two_groups(model, ("head", "head")), lr=0.1))


def test_log_holds_every_groups_learning_rate(tmp_path):
    engine = engine_with(tmp_path, epochs=2, groups=two_groups, warmup=0.0)
    task = ToyTask()
    engine.fit(task, task.loader())
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert list(rows[0])[:3] == ["epoch", "lr_encoder", "lr"]
    for row, progress in zip(rows, (3 / 8, 7 / 8)):  # 4 steps an epoch: the rate of each epoch's last step
        assert float(row["lr"]) == pytest.approx(0.1 * lr_factor(progress, 0.0, "cosine"))
        assert float(row["lr_encoder"]) == pytest.approx(0.01 * lr_factor(progress, 0.0, "cosine"))


def test_a_state_saved_without_group_names_resumes_with_the_groups_named_now(tmp_path):
    engine = engine_with(tmp_path, epochs=1, groups=lambda m: two_groups(m, (None, None)))
    task = ToyTask()
    engine.fit(task, task.loader())
    resumed = engine_with(tmp_path, epochs=2, groups=two_groups)  # this version's names; the state has none
    resumed.fit(task, task.loader(), resume=True)
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert rows[0]["lr0"] and not rows[0]["lr_encoder"]
    assert rows[1]["lr_encoder"] and rows[1]["lr"] and not rows[1]["lr0"]  # load_state_dict drops the names


def test_last_model_says_whether_the_run_finished(tmp_path):
    task = ToyTask()
    engine_with(tmp_path / "epochs", epochs=2).fit(task, task.loader())
    assert finished(tmp_path / "epochs") == "epochs"

    engine_with(tmp_path / "time", epochs=1000, time_budget_s=1e-3).fit(task, task.loader())
    assert finished(tmp_path / "time") == "time"

    cut = tmp_path / "cut"
    task = ToyTask(crash_at_step=11)  # 4 steps per epoch: killed in epoch 3, after epoch 2's checkpoint
    with pytest.raises(KeyboardInterrupt):
        engine_with(cut, epochs=4).fit(task, task.loader())
    assert finished(cut) == "no"
    task = ToyTask(crash_at_step=1)  # resumed, then killed before an epoch ends
    with pytest.raises(KeyboardInterrupt):
        engine_with(cut, epochs=4).fit(task, task.loader(), resume=True)
    assert finished(cut) == "no"
    task = ToyTask()
    engine_with(cut, epochs=4).fit(task, task.loader(), resume=True)
    assert finished(cut) == "epochs"
    task = ToyTask(crash_at_step=1)  # lengthened, killed before its first new epoch ends: not finished any more
    with pytest.raises(KeyboardInterrupt):
        engine_with(cut, epochs=5).fit(task, task.loader(), resume=True)
    assert finished(cut) == "no"


def test_before_write_is_called_only_when_something_is_left_to_train(tmp_path):
    calls = []
    task = ToyTask()
    engine_with(tmp_path, epochs=2).fit(task, task.loader(), before_write=lambda: calls.append("new"))
    assert calls == ["new"]
    log = (tmp_path / "log.csv").read_bytes()
    result = engine_with(tmp_path, epochs=2).fit(task, task.loader(), resume=True,
                                                  before_write=lambda: calls.append("same"))
    assert calls == ["new"] and result.epochs_run == 2 and not result.history
    assert (tmp_path / "log.csv").read_bytes() == log and finished(tmp_path) == "epochs"
    engine_with(tmp_path, epochs=1).fit(task, task.loader(), resume=True, before_write=lambda: calls.append("fewer"))
    assert calls == ["new"] and finished(tmp_path) == "epochs"
    engine_with(tmp_path, epochs=3).fit(task, task.loader(), resume=True, before_write=lambda: calls.append("more"))
    assert calls == ["new", "more"]
    assert [r["epoch"] for r in csv.DictReader(open(tmp_path / "log.csv"))] == ["1", "2", "3"]


def test_the_epoch_line_shows_4_significant_digits(tmp_path, capsys):
    # was: lr_encoder=1.1161836888096133e-11 on the console (log.csv keeps every digit)
    task = ToyTask()
    engine_with(tmp_path, epochs=1, groups=two_groups, quiet=False).fit(task, task.loader())
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("epoch 1: "))
    assert re.fullmatch(r"epoch 1: lr_encoder=\S+ lr=\S+ train_ce=\S+ train_loss=\S+ seconds=\S+ images_per_s=\S+ "
                        r"val_acc=\S+", line), line
    digits = [len(re.sub(r"\D", "", m.split("e")[0]).lstrip("0")) for m in re.findall(r"=([-\d.e+]+)", line)]
    assert max(digits) <= 4, line
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows[0]["lr"].replace(".", "").lstrip("0")) > 4  # the log's own value, not the line's
