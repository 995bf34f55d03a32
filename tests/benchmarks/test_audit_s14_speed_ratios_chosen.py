"""benchmarks/coseg_icoseg.py --ratios, --rounds: the speed ratios measured are those named (all of them had not
finished after 22 minutes for the default ensemble), in the paired rounds asked; an unknown name, --ratios or
--rounds where no ratio is measured, or fewer than 2 rounds, is refused in one line before any work."""
from __future__ import annotations

import json
import sys

import pytest

from coseg.config import CosegTrainConfig
from coseg.engine import config_from_dict, save_config
from coseg.models import create_model
from tests.benchmarks.scripts import BENCHMARKS, load_script
from tests.benchmarks.test_coseg_icoseg import icoseg_like


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings timing.py and checks.py
    return load_script("coseg_icoseg.py")


def finished_run(tmp_path):
    data = icoseg_like(tmp_path / "icoseg")
    run = tmp_path / "run"
    cfg = config_from_dict(CosegTrainConfig, {"data": str(data), "layout": "icoseg", "train_split": "train30",
                                              "output": str(run), "members": 1}, "test")
    save_config(cfg, run / "config.yaml")
    create_model("unet", weights=None, embedding_dim=8, group_levels=0).save(run / "best.safetensors",
                                                                             {"image_size": "64"})
    return data, run


def test_only_the_ratios_named_are_measured(tmp_path, monkeypatch, bench):
    data, run = finished_run(tmp_path)
    called = []
    for name in ("measure_triplet_share", "measure_predict_vs_forward", "measure_train_vs_plain"):
        monkeypatch.setattr(bench, name, lambda *args, name=name, **kwargs: called.append(name) or {name: 1.0})
    monkeypatch.setattr(sys, "argv", ["coseg_icoseg.py", "--data", str(data), "--speed-of", str(run),
                                      "--ratios", "train_vs_plain", "--out", str(tmp_path / "speed.json")])
    bench.main()
    assert called == ["measure_train_vs_plain"]
    assert json.loads((tmp_path / "speed.json").read_text()) == {"measure_train_vs_plain": 1.0}


@pytest.mark.parametrize("extra, message", [
    (["--speed-of", "RUN", "--ratios", "train_vs_plain,speed"], "--ratios: unknown ratio(s) speed; choose among"),
    (["--speed-of", "RUN", "--ratios", ","], "--ratios: unknown ratio(s) ''"),
    (["--minutes", "1", "--skip-speed", "--ratios", "triplet_share"], "--ratios cannot be used with --skip-speed"),
    (["--scores-of", "RUN", "--ratios", "triplet_share"], "--ratios cannot be used with --skip-speed or --scores-of"),
    (["--speed-of", "RUN", "--rounds", "1"], "--rounds must be at least 2"),
    (["--scores-of", "RUN", "--rounds", "6"], "--rounds cannot be used with --skip-speed or --scores-of"),
    (["--minutes", "1", "--skip-speed", "--rounds", "6", "--ratios", "triplet_share"],
     "--ratios, --rounds cannot be used with --skip-speed")])
def test_ratios_that_would_not_be_measured_are_refused(tmp_path, monkeypatch, capsys, bench, extra, message):
    monkeypatch.setattr(sys, "argv", ["coseg_icoseg.py", "--data", str(tmp_path), "--out", str(tmp_path / "o.json"),
                                      *[str(tmp_path / "run") if a == "RUN" else a for a in extra]])
    with pytest.raises(SystemExit) as stopped:
        bench.main()
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_rounds_reach_every_measurement_named(tmp_path, monkeypatch, bench):
    data, run = finished_run(tmp_path)
    rounds = {}
    for name in ("measure_triplet_share", "measure_predict_vs_forward", "measure_train_vs_plain"):
        monkeypatch.setattr(bench, name, lambda *args, name=name, **kwargs: rounds.update({name: kwargs}) or {})
    monkeypatch.setattr(sys, "argv", ["coseg_icoseg.py", "--data", str(data), "--speed-of", str(run),
                                      "--rounds", "3", "--out", str(tmp_path / "speed.json")])
    bench.main()
    assert rounds == {name: {"rounds": 3} for name in ("measure_triplet_share", "measure_predict_vs_forward",
                                                        "measure_train_vs_plain")}
    monkeypatch.setattr(sys, "argv", ["coseg_icoseg.py", "--data", str(data), "--speed-of", str(run),
                                      "--ratios", "triplet_share", "--out", str(tmp_path / "speed.json")])
    rounds.clear()
    bench.main()
    assert rounds == {"measure_triplet_share": {}}  # each measurement's own default

