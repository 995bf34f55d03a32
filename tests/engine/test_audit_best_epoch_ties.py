"""The best epoch is the best one log.csv shows: validation scores that differ only past the digits log.csv keeps
are a tie, which the earlier epoch wins, as the report marks it."""
from __future__ import annotations

import torch
from safetensors import safe_open

from coseg.engine import DistInfo, Engine
from coseg.report.training import best_epoch, read_log
from tests.engine.toy import ToyModel, ToyTask


class Scripted(ToyTask):
    """Validation scores given epoch by epoch."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = list(scores)

    def validate(self, model) -> dict[str, float]:
        return {"J": self.scores.pop(0)}


def test_scores_equal_in_the_log_are_a_tie_the_earlier_epoch_wins(tmp_path):
    torch.manual_seed(0)
    model = ToyModel()
    engine = Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), tmp_path, dist=DistInfo(), epochs=3,
                    select_metric="J", quiet=True)
    task = Scripted([70.00001, 70.00004, 60.0])  # log.csv: 70.0, 70.0, 60.0
    result = engine.fit(task, task.loader())
    assert (result.best_epoch, result.best_metric) == (1, 70.0)  # was: epoch 2, by a digit log.csv does not hold
    with safe_open(str(tmp_path / "best.safetensors"), "pt") as f:
        assert f.metadata()["epoch"] == "1"
    assert best_epoch(*read_log(tmp_path / "log.csv")) == (1, "val_J")
