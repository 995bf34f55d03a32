import csv
import io

import pytest
import torch

from coseg.engine import DistInfo, Engine, NonFiniteLossError, lr_factor
from tests.engine.toy import ToyModel, ToyTask


def make_engine(tmp_path, epochs, **kw):
    torch.manual_seed(0)
    model = ToyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return Engine(model, opt, tmp_path, dist=DistInfo(), epochs=epochs, select_metric="acc", quiet=True, **kw), model


def test_fit_writes_checkpoints_and_log(tmp_path):
    engine, model = make_engine(tmp_path, epochs=3)
    task = ToyTask()
    result = engine.fit(task, task.loader())
    assert result.epochs_run == 3
    for name in ("last.safetensors", "best.safetensors", "last.pt", "log.csv"):
        assert (tmp_path / name).is_file(), name
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"train_loss", "train_ce", "val_acc", "lr", "seconds", "images_per_s"} <= set(rows[0])
    best = max(float(r["val_acc"]) for r in rows)
    assert result.best_metric == pytest.approx(best, abs=1e-4)
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


@pytest.mark.parametrize("workers", [0, 2])  # persistent workers: their seed is drawn in a session's first epoch
def test_resume_equals_uninterrupted_run(tmp_path, workers):
    full, full_model = make_engine(tmp_path / "full", epochs=4)
    task = ToyTask()
    full.fit(task, task.loader(workers))

    torch.manual_seed(123)  # the interrupted run must not depend on the global RNG at restart
    first, _ = make_engine(tmp_path / "cut", epochs=4)
    task = ToyTask(crash_at_step=11)  # 4 steps per epoch: dies in epoch 3, after epoch 2's checkpoint
    with pytest.raises(KeyboardInterrupt):
        first.fit(task, task.loader(workers))
    torch.manual_seed(999)
    second, resumed_model = make_engine(tmp_path / "cut", epochs=4)
    task = ToyTask()
    second.fit(task, task.loader(workers), resume=True)
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    rows = list(csv.DictReader(open(tmp_path / "cut" / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    engine, _ = make_engine(tmp_path, epochs=3)
    task = ToyTask(nan_at_step=6)  # 4 steps per epoch: fails in epoch 2
    with pytest.raises(NonFiniteLossError, match="epoch 2"):
        engine.fit(task, task.loader())
    good = ToyModel()
    good.load(tmp_path / "last.safetensors")
    assert all(torch.isfinite(p).all() for p in good.parameters())
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 1


def test_nan_inputs_refused_by_a_loss_stop_the_run_as_a_nan_loss(tmp_path):
    engine, _ = make_engine(tmp_path, epochs=3)
    task = ToyTask(nan_input_at_step=6)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(logits holds 48 NaN/Inf value\(s\)\) at epoch 2"):
        engine.fit(task, task.loader())
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1


def test_nan_loss_in_the_first_epoch_points_to_no_checkpoint(tmp_path):
    engine, _ = make_engine(tmp_path, epochs=3)
    task = ToyTask(nan_at_step=2)
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 2") as failure:
        engine.fit(task, task.loader())
    message = str(failure.value)
    assert "before the first checkpoint" in message and "train again" in message
    assert "epoch 0" not in message and "--resume" not in message  # there is nothing to resume
    assert not (tmp_path / "last.pt").exists()


def test_time_budget_stops_early(tmp_path):
    engine, _ = make_engine(tmp_path, epochs=1000, time_budget_s=0.5)
    task = ToyTask()
    result = engine.fit(task, task.loader())
    assert result.stopped_by_time and result.epochs_run < 1000
    assert (tmp_path / "last.safetensors").is_file()


@pytest.mark.parametrize("budget", [-60.0, 0.0, float("nan")])
def test_a_time_budget_that_is_not_positive_is_refused(tmp_path, budget):
    with pytest.raises(ValueError, match=r"time_budget_s must be > 0 \(None: no budget\)"):
        make_engine(tmp_path, epochs=2, time_budget_s=budget)


def test_lr_factor_schedule():
    assert lr_factor(0.0, 0.1, "cosine") == pytest.approx(0.01)
    assert lr_factor(0.05, 0.1, "cosine") == pytest.approx(0.5)
    assert lr_factor(0.1, 0.1, "cosine") == pytest.approx(1.0)
    assert lr_factor(1.0, 0.1, "cosine") == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(0.7, 0.0, "constant") == 1.0
    with pytest.raises(ValueError, match="valid"):
        lr_factor(0.5, 0.0, "bogus")


def test_resume_refuses_pickled_payload(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "last.pt").write_bytes(pickle.dumps({"epoch": 1, "model": Evil()}))
    engine, _ = make_engine(tmp_path, epochs=2)
    task = ToyTask()
    from coseg.engine import CheckpointError

    with pytest.raises(CheckpointError, match="refused"):
        engine.fit(task, task.loader(), resume=True)
    assert not marker.exists()


def test_resume_goes_on_with_the_time_budget_already_used(tmp_path):
    def resume_after(seconds: float, crash_at_step=None):
        state = torch.load(tmp_path / "last.pt", weights_only=True)
        state["seconds"] = seconds  # as if the checkpointed epochs had taken this long
        torch.save(state, tmp_path / "last.pt")
        engine, _ = make_engine(tmp_path, epochs=1000, time_budget_s=1000)
        task = ToyTask(crash_at_step=crash_at_step)
        return engine, task

    first, _ = make_engine(tmp_path, epochs=1000, time_budget_s=1000)
    task = ToyTask(crash_at_step=11)  # dies in epoch 3, after epoch 2's checkpoint
    with pytest.raises(KeyboardInterrupt):
        first.fit(task, task.loader())
    assert 0 < torch.load(tmp_path / "last.pt", weights_only=True)["seconds"] < 1000

    engine, task = resume_after(500, crash_at_step=5)  # half the budget used: the schedule is half way through
    with pytest.raises(KeyboardInterrupt):
        engine.fit(task, task.loader(), resume=True)
    lr = float(list(csv.DictReader(open(tmp_path / "log.csv")))[-1]["lr"])
    assert lr == pytest.approx(0.1 * lr_factor(0.5, 0.05, "cosine"), rel=0.05)  # not warming up again

    engine, task = resume_after(1000)  # the budget was spent: nothing is left to train
    result = engine.fit(task, task.loader(), resume=True)
    assert result.stopped_by_time and result.epochs_run == 3 and task.steps == 0
    assert result.seconds >= 1000


def _damaged(path, damage: str) -> bytes:
    """``path`` (a training state) with ``damage`` done to it."""
    good = path.read_bytes()
    state = torch.load(path, weights_only=True)
    if damage == "truncated":
        return good[: len(good) // 2]
    if damage == "flipped byte":  # in the stored weights, where the unpickler notices nothing
        at = good.index(state["model"]["net.0.weight"].numpy().tobytes()) + 5
        return good[:at] + bytes([good[at] ^ 0x10]) + good[at + 1:]
    if damage == "text":
        return b"hello\n"
    buffer = io.BytesIO()
    torch.save({k: v for k, v in state.items() if k != "optimizer"} if damage == "no optimizer" else
               {**state, "epoch": "one"}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("damage, words", [
    ("truncated", "refused to load"), ("flipped byte", r"damaged: its entry data/\d+ fails its checksum"),
    ("text", r"refused to load: not a safe training checkpoint \(KeyError"),
    ("no optimizer", r"missing or damaged: optimizer\)$"), ("epoch as text", r"missing or damaged: epoch\)$"),
])
def test_resume_from_a_damaged_state_names_it_and_writes_nothing(tmp_path, damage, words):
    from coseg.engine import CheckpointError

    engine, _ = make_engine(tmp_path, epochs=1)
    task = ToyTask()
    engine.fit(task, task.loader())
    (tmp_path / "last.pt").write_bytes(_damaged(tmp_path / "last.pt", damage))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    resumed, _ = make_engine(tmp_path, epochs=2)
    with pytest.raises(CheckpointError, match=words) as failure:
        resumed.fit(task, task.loader(), resume=True)
    assert str(failure.value).startswith(f"{tmp_path / 'last.pt'}: ")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_nan_validation_metric_is_not_selected(tmp_path):
    engine, _ = make_engine(tmp_path, epochs=3)
    task = ToyTask()
    task.validate = lambda model: {"acc": float("nan")}  # e.g. J when every validation mask is empty
    result = engine.fit(task, task.loader())
    assert result.best_metric is None and result.best_epoch == 3  # the newest model, as without validation
    assert torch.load(tmp_path / "last.pt", weights_only=True)["best_epoch"] == 3


def test_a_nan_validation_metric_after_scored_epochs_keeps_the_best_scored_model(tmp_path):
    """Validation that can no longer be scored (its images lost mid-run) must not make the newest model the best."""
    engine, _ = make_engine(tmp_path, epochs=3)
    task = ToyTask()
    scores = iter([0.5, 0.7, float("nan")])
    task.validate = lambda model: {"acc": next(scores)}
    result = engine.fit(task, task.loader())
    assert result.best_metric == 0.7 and result.best_epoch == 2
    assert torch.load(tmp_path / "last.pt", weights_only=True)["best_epoch"] == 2


def test_resume_into_another_model_is_a_checkpoint_error(tmp_path):
    from coseg.engine import CheckpointError

    engine, _ = make_engine(tmp_path, epochs=1)
    task = ToyTask()
    engine.fit(task, task.loader())
    model = ToyModel()
    model.net[0] = torch.nn.Linear(8, 32)
    model.net[3] = torch.nn.Linear(32, 3)
    other = Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), tmp_path, dist=DistInfo(), epochs=2,
                   select_metric="acc", quiet=True)
    with pytest.raises(CheckpointError, match=r"last.pt: does not fit this model \(size mismatch for net.0.weight: "
                                              r".*\); resume it with the options and the data it was trained with"):
        other.fit(task, task.loader(), resume=True)


def test_resolve_device_rejects_a_bad_name_as_bad_input():
    from coseg.engine import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu'; valid: auto, cpu, cuda"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda:1' was asked for but CUDA is not available"):
            resolve_device("cuda:1")
