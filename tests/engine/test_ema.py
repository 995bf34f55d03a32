import pytest
import torch
from torch import nn

from coseg.engine import DistInfo, Engine, weight_ema
from coseg.engine.ema import ema_decay_at
from tests.engine.toy import ToyModel, ToyTask


def test_decay_warms_up_then_stays():
    assert ema_decay_at(0.99, 0) == pytest.approx(0.1)
    assert ema_decay_at(0.99, 8) == pytest.approx(0.5)
    assert ema_decay_at(0.99, 10**6) == 0.99
    n = round((10 * 0.99 - 1) / (1 - 0.99))
    assert ema_decay_at(0.99, n - 1) < 0.99 and ema_decay_at(0.99, n) == pytest.approx(0.99)


def test_average_equals_a_loop_over_the_weights_seen():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = weight_ema(model, decay=0.6)
    expected = {}
    for n in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(5, 3))  # moves BatchNorm's running statistics and its integer batch counter
        ema.update_parameters(model)
        for k, v in model.state_dict().items():  # the first update copies, then n - 1 is the update's number
            if n == 0 or not v.is_floating_point():
                expected[k] = v.clone()
            else:
                d = ema_decay_at(0.6, n - 1)
                expected[k] = d * expected[k] + (1 - d) * v
    got = ema.module.state_dict()
    assert got.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], msg=k)
    assert int(got["1.num_batches_tracked"]) == 6
    assert not any(p.requires_grad for p in ema.parameters())


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_decay_outside_zero_one_is_refused(decay):
    with pytest.raises(ValueError, match="EMA decay must be in"):
        weight_ema(nn.Linear(2, 2), decay)


def make_engine(tmp_path, epochs, ema_decay):
    torch.manual_seed(0)
    model = ToyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return Engine(model, opt, tmp_path, dist=DistInfo(), epochs=epochs, select_metric="acc", quiet=True,
                  ema_decay=ema_decay), model


def test_engine_validates_and_saves_the_average(tmp_path):
    engine, model = make_engine(tmp_path, epochs=3, ema_decay=0.7)
    task = ToyTask()
    result = engine.fit(task, task.loader())
    assert int(engine.ema.n_averaged) == 3 * 4  # one update per step, the first a copy
    saved = ToyModel()
    saved.load(tmp_path / "last.safetensors")
    for k, v in engine.ema.module.state_dict().items():
        torch.testing.assert_close(saved.state_dict()[k], v, rtol=0, atol=0)
    assert any(not torch.equal(saved.state_dict()[k], v) for k, v in model.state_dict().items())  # not the raw one
    assert result.history[-1]["val_acc"] == pytest.approx(task.validate(saved.eval())["acc"], abs=1e-4)
    assert result.history[-1]["val_acc"] != pytest.approx(task.validate(model.eval())["acc"], abs=1e-4)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(state["model"][k], v, rtol=0, atol=0)  # resuming needs the raw weights too


def test_resume_with_average_equals_uninterrupted_run(tmp_path):
    full, _ = make_engine(tmp_path / "full", epochs=4, ema_decay=0.8)
    task = ToyTask()
    full.fit(task, task.loader())

    first, _ = make_engine(tmp_path / "cut", epochs=4, ema_decay=0.8)
    task = ToyTask(crash_at_step=11)  # dies in epoch 3, after epoch 2's checkpoint
    with pytest.raises(KeyboardInterrupt):
        first.fit(task, task.loader())
    second, _ = make_engine(tmp_path / "cut", epochs=4, ema_decay=0.8)
    task = ToyTask()
    second.fit(task, task.loader(), resume=True)
    for a, b in zip(full.ema.state_dict().values(), second.ema.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("first_decay,second_decay,words", [(0.8, 0.0, "with a weight average"),
                                                            (0.0, 0.8, "without a weight average")])
def test_resume_with_another_average_setting_is_refused(tmp_path, first_decay, second_decay, words):
    engine, _ = make_engine(tmp_path, epochs=1, ema_decay=first_decay)
    task = ToyTask()
    engine.fit(task, task.loader())
    engine, _ = make_engine(tmp_path, epochs=2, ema_decay=second_decay)
    with pytest.raises(RuntimeError, match=f"last.pt: saved by a run {words}"):
        engine.fit(task, task.loader(), resume=True)
