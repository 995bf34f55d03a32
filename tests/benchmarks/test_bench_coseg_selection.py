"""benchmarks/coseg_icoseg.py never chooses anything on test8: a config (``--set``, or a finished run's config.yaml
for ``--scores-of``) whose validation or training groups include a test8 group is refused with one line before
any training or scoring; and a malformed ``--set`` is named."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from coseg.config import CosegTrainConfig
from coseg.engine import config_from_dict, save_config
from tests.benchmarks.scripts import BENCHMARKS, load_script
from tests.benchmarks.test_coseg_icoseg import TINY, icoseg_like


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return icoseg_like(tmp_path_factory.mktemp("selection") / "icoseg")


@pytest.fixture
def bench(monkeypatch):
    """The script as a module whose training and scoring fail the test if they are ever reached."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings timing.py and checks.py
    module = load_script("coseg_icoseg.py")

    def reached(*args, **kwargs):
        raise AssertionError("the benchmark went on to train or score")

    monkeypatch.setattr(module, "train", reached)
    monkeypatch.setattr(module, "quality", reached)
    return module


def refusal(bench, monkeypatch, *args: object) -> str:
    monkeypatch.setattr(sys, "argv", ["coseg_icoseg.py", *map(str, args)])
    with pytest.raises(SystemExit) as stopped:
        bench.main()
    message = str(stopped.value.code)
    assert message.startswith("coseg_icoseg.py: error: ") and "\n" not in message, message
    return message


def groups(data: Path) -> tuple[list[str], list[str]]:
    splits = json.loads((data / "splits.json").read_text())
    return splits["train30"], list(splits["test8"])


def test_validation_groups_from_test8_are_refused_before_training(bench, data, tmp_path, monkeypatch):
    test_group = groups(data)[1][0]
    message = refusal(bench, monkeypatch, "--data", data, "--minutes", 0.01, *TINY, "--set=val_fraction=0.15",
                      f"--set=val_groups={test_group}",
                      "--out", tmp_path / "out.json")
    assert "validation group(s)" in message and test_group in message and "test8" in message
    assert list(tmp_path.iterdir()) == []


def test_training_groups_from_test8_are_refused_before_training(bench, data, tmp_path, monkeypatch):
    train, test = groups(data)
    message = refusal(bench, monkeypatch, "--data", data, "--minutes", 0.01, *TINY, "--set=val_fraction=0.15",
                      f"--set=train_groups={train[0]},{train[1]},{test[1]}", f"--set=val_groups={train[2]}",
                      "--out", tmp_path / "out.json")
    assert "training group(s)" in message and test[1] in message
    assert list(tmp_path.iterdir()) == []


def test_a_finished_run_validated_on_test8_is_not_scored(bench, data, tmp_path, monkeypatch):
    """--scores-of chooses the refinement weight on the run's validation groups: never test8 ones."""
    run = tmp_path / "run"
    test_group = groups(data)[1][0]
    cfg = config_from_dict(CosegTrainConfig, {"data": str(data), "layout": "icoseg", "train_split": "train30",
                                              "output": str(run), "val_groups": [test_group]}, "test")
    save_config(cfg, run / "config.yaml")
    (run / "best.safetensors").write_bytes(b"never read")
    message = refusal(bench, monkeypatch, "--data", data, "--scores-of", run, "--out", tmp_path / "out.json")
    assert "validation group(s)" in message and test_group in message
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("pair", ["members", "=3"])
def test_a_set_without_key_and_value_is_named(bench, data, tmp_path, monkeypatch, pair):
    message = refusal(bench, monkeypatch, "--data", data, "--minutes", 0.01, f"--set={pair}",
                      "--out", tmp_path / "out.json")
    assert message.endswith(f"--set {pair!r}: expected KEY=VALUE")


def test_a_set_replaces_the_config_files_other_way_of_giving_it(bench, data, tmp_path, monkeypatch):
    """``--set val_groups=`` replaces a ``--config`` file's ``val_fraction`` (and ``train_groups`` its
    ``train_split``), as ``coseg train``'s command line does: the run goes on to the test8 check, not refused for
    giving both."""
    config = tmp_path / "base.yaml"
    config.write_text("val_fraction: 0.3\n")
    test_group = groups(data)[1][0]
    message = refusal(bench, monkeypatch, "--data", data, "--minutes", 0.01, "--config", config,
                      *[a for a in TINY if "val_fraction" not in a], f"--set=val_groups={test_group}",
                      "--out", tmp_path / "out.json")
    assert "test8" in message and "both choose" not in message, message
