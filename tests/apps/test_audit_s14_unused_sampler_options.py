"""The options of one batch sampler that have a default of their own (smart_mining's --target-active and
--controller-gain, class_representative's --proximity-weight) set for another sampler: refused as the other unused
method options are, before any image is read (they were ignored without a word)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from apps.retrieval.components import build_components
from apps.retrieval.config import RetrievalTrainConfig
from coseg.engine import ConfigError
from tests.apps.retrieval_runs import BACKBONE, tiny_set
from tests.apps.test_audit_s12_cli_config import coseg

LABELS = torch.arange(4).repeat_interleave(3)


@pytest.mark.parametrize("changes, flags", [
    ({"target_active": 0.3}, "--target-active"), ({"controller_gain": 0.1}, "--controller-gain"),
    ({"proximity_weight": 0.5}, "--proximity-weight"),
    ({"sampler": "hierarchical", "target_active": 0.9, "proximity_weight": 0.0}, "--target-active, --proximity-weight"),
])
def test_an_option_of_another_sampler_is_refused(changes: dict, flags: str) -> None:
    cfg = RetrievalTrainConfig(classes_per_batch=2, **changes)
    with pytest.raises(ConfigError, match=f"^{flags} set but not used by loss 'triplet_margin', miner 'none' or "
                                          f"sampler '{cfg.sampler}'$"):
        build_components(cfg, LABELS, 4)


@pytest.mark.parametrize("changes", [
    {"sampler": "smart_mining", "loss": "global", "target_active": 0.3, "controller_gain": 0.1},
    {"sampler": "class_representative", "proximity_weight": 0.5},
    {"target_active": 0.5, "controller_gain": 0.05, "proximity_weight": 0.1},  # their defaults: as if not given
])
def test_the_samplers_own_options_and_the_defaults_are_taken(changes: dict) -> None:
    assert build_components(RetrievalTrainConfig(classes_per_batch=2, samples_per_class=3, **changes), LABELS, 4)


@pytest.mark.parametrize("flag, value", [("--controller-gain", "0.2"),
                                         ("--loss-lr", "0.1")])  # a loss without parameters (audit s17)
def test_the_command_refuses_it_before_any_image_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str,
                                                         value: str) -> None:
    import apps.retrieval.train as retrieval_train

    def no_images(*args, **kwargs):
        raise AssertionError("an image was read")

    monkeypatch.setattr(retrieval_train, "ImageCache", no_images)
    data = tiny_set(tmp_path / "data")
    code, output = coseg("retrieval", "train", "--data", data, "--output", tmp_path / "run", "--backbone", BACKBONE,
                         "--weights", "none", "--classes-per-batch", "2", "--samples-per-class", "2",
                         "--val-fraction", "0.34", flag, value, "--device", "cpu", "--quiet")
    assert code == 2 and f"Error: {flag} set but not used by loss 'triplet_margin'" in output, output
    assert not (tmp_path / "run").exists()
