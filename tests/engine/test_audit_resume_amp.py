"""``--resume`` may turn AMP on (``--amp``, ``--device cuda``: resumable options) for a run trained without it (on
the CPU, or with ``--no-amp``), whose ``last.pt`` holds the empty state of a disabled gradient scaler."""
from __future__ import annotations

import csv

import torch

from coseg.engine import DistInfo, Engine
from tests.engine.toy import ToyModel, ToyTask


def engine(tmp_path, epochs: int) -> Engine:
    torch.manual_seed(0)
    model = ToyModel()
    return Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), tmp_path, dist=DistInfo(), epochs=epochs,
                  select_metric="acc", quiet=True)


def test_a_run_trained_without_amp_resumes_with_it(tmp_path):
    task = ToyTask()
    engine(tmp_path, epochs=1).fit(task, task.loader())
    assert torch.load(tmp_path / "last.pt", weights_only=True)["scaler"] == {}
    resumed = engine(tmp_path, epochs=2)
    resumed.scaler = torch.amp.GradScaler("cpu", enabled=True)  # what AMP on CUDA uses, here on the CPU
    result = resumed.fit(task, task.loader(), resume=True)  # was: RuntimeError, "The source state dict is empty"
    assert result.epochs_run == 2
    assert [r["epoch"] for r in csv.DictReader(open(tmp_path / "log.csv"))] == ["1", "2"]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["scaler"]["scale"] > 0  # AMP's scale from now on
