"""The README's `--weights FILE` sentence: a classifier's file loads into the encoder with its classifier keys left
out, and only for a non-timm smp encoder does a line say so (a `tu-` encoder's timm file, whose classifier the
semantic prior can read, loads without one)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import timm
import torch

from coseg.models import create_model
from tests.coseg.test_pretrained import LITE0, torchvision_resnet18_file

LOGGER = "coseg.models.pretrained"


def test_a_timm_classifier_file_loads_into_the_tu_encoder_without_a_line(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    state = timm.create_model(LITE0).state_dict()
    assert any(k.startswith("classifier.") for k in state)
    path = tmp_path / "lite0_classifier.pth"
    torch.save(state, path)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        model = create_model("unet", encoder="tu-" + LITE0, weights=str(path), semantic_prior=False)
    loaded = model.encoder.model.state_dict()
    assert loaded and all(torch.equal(value, state[key]) for key, value in loaded.items())
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_a_torchvision_classifier_file_says_its_head_is_left_out(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    path, _ = torchvision_resnet18_file(tmp_path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        create_model("unet", encoder="resnet18", weights=str(path), semantic_prior=False)
    assert any("left out the classifier keys fc.weight, fc.bias" in r.getMessage() for r in caplog.records)
