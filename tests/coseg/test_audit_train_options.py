"""``coseg train`` refuses a negative learning rate or weight decay by the option's name before it reads the data
(was: AdamW's "Invalid learning rate: -0.001", once the data set had been scanned and the model built)."""
from __future__ import annotations

import pytest

from coseg.config import CosegTrainConfig
from coseg.engine import ConfigError
from coseg.train import train


@pytest.mark.parametrize("option, value, message", [
    ("lr", -1e-3, "lr must be >= 0, got -0.001"),
    ("weight_decay", -1e-4, "weight_decay must be >= 0, got -0.0001"),
])
def test_optimiser_rates_below_0_are_refused_by_name_before_the_data_is_read(tmp_path, option, value, message):
    cfg = CosegTrainConfig(data=str(tmp_path / "nowhere"), output=str(tmp_path / "run"), **{option: value})
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()
