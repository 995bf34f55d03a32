"""A model file whose metadata records an image size its model cannot take is refused naming the file and saying
the size came from its metadata (it said only "image size must be a multiple of 32, got 100")."""
from __future__ import annotations

import re

import pytest
import torch

from coseg.checkpoints import load_for_inference
from coseg.models import create_model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=4).save(path, {"image_size": "100"})
    return path


def test_a_recorded_size_the_model_cannot_take_names_the_file_and_the_metadata(model_file):
    with pytest.raises(ValueError, match=re.escape(f"the image size its metadata records must be a multiple of 32, "
                                                   f"got 100 (model file {model_file})")):
        load_for_inference(model_file, torch.device("cpu"))


def test_a_given_size_the_model_cannot_take_names_the_file(model_file):
    with pytest.raises(ValueError) as refused:
        load_for_inference(model_file, torch.device("cpu"), 100)
    assert str(refused.value) == f"image size must be a multiple of 32, got 100 (model file {model_file})"
    assert load_for_inference(model_file, torch.device("cpu"), 96)[1] == 96
