"""A run resumed on a device other than the CPU reads ``last.pt`` onto the CPU: its random streams must be CPU
tensors (``torch.set_rng_state``, NumPy's state), and ``load_state_dict`` puts model and optimizer state on the
model's device (was: all of it loaded onto the run's device, where NumPy cannot read the stream of a CUDA run).
This machine has no GPU: the ``meta`` device stands in for one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from coseg.engine import DistInfo, Engine
from coseg.engine.checkpoint import load_training_state
from tests.engine.toy import ToyModel, ToyTask


def engine(tmp_path, device: torch.device) -> Engine:
    torch.manual_seed(0)
    model = ToyModel()
    return Engine(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), tmp_path,
                  dist=DistInfo(device=device), epochs=2, select_metric="acc", quiet=True)


@pytest.mark.filterwarnings("ignore:for .* copying from a non-meta parameter")  # meta parameters hold no data
def test_resume_on_another_device_restores_the_random_streams(tmp_path):
    task = ToyTask()
    engine(tmp_path, torch.device("cpu")).fit(task, task.loader())
    saved = load_training_state(tmp_path / "last.pt")["rng"]
    torch.manual_seed(123)
    np.random.seed(123)
    state = engine(tmp_path, torch.device("meta"))._resume()
    assert state["epoch"] == 2
    assert torch.equal(torch.get_rng_state(), saved["torch"])
    assert np.random.get_state(legacy=True)[2] == saved["numpy"]["pos"]
