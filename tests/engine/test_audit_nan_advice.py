"""A non-finite loss after the first checkpoint advises what can be done: ``--resume`` keeps the run's learning
rate (it is no resumable option, in either trainer), so a lower one means training anew with ``--overwrite``
(was: "lower the learning rate or check the data, then --resume", which a resume with a lower --lr refuses)."""
from __future__ import annotations

import pytest
import torch

from apps.retrieval.train import RUN_FOLDER as RETRIEVAL_RUN_FOLDER
from coseg.engine import DistInfo, Engine, NonFiniteLossError
from coseg.train import RUN_FOLDER
from tests.engine.toy import ToyModel, ToyTask


def test_a_lower_learning_rate_is_advised_with_overwrite_not_resume(tmp_path):
    assert "lr" not in RUN_FOLDER.resumable and "lr" not in RETRIEVAL_RUN_FOLDER.resumable
    torch.manual_seed(0)
    model = ToyModel()
    engine = Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), tmp_path, dist=DistInfo(), epochs=3,
                    select_metric="acc", quiet=True)
    task = ToyTask(nan_at_step=6)  # 4 steps per epoch: fails in epoch 2
    with pytest.raises(NonFiniteLossError) as failure:
        engine.fit(task, task.loader())
    message = str(failure.value)
    assert f"{tmp_path / 'last.safetensors'} (epoch 1); check the data, then --resume (which keeps the run's " \
           "learning rate), or train anew with a lower one (--overwrite)" in message
