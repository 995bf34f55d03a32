"""A weights file that does not fit names its keys in one order, whatever the order of the file: the keys the model
lacks as a state dict orders them (modules in natural order, each module's weight before its bias)."""
from __future__ import annotations

import logging
import re

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from coseg.models import create_model, load_model
from coseg.models.checkpoint import write_checkpoint
from coseg.models.cosegnet import MODEL_KIND
from coseg.models.pretrained import load_checked, load_encoder_weights

EXTRA = ["extra.layer10.weight", "extra.layer9.bias", "extra.layer2.running_var", "extra.layer9.weight",
         "extra.layer2.weight", "extra.layer2.bias", "extra.layer2.running_mean"]
ORDERED = ["extra.layer2.weight", "extra.layer2.bias", "extra.layer2.running_mean", "extra.layer2.running_var",
           "extra.layer9.weight", "extra.layer9.bias", "extra.layer10.weight"]


def _refusal(keys: list[str]) -> str:
    module = nn.Linear(2, 2)
    state = {**module.state_dict(), **{key: torch.zeros(1) for key in keys}}
    known = {key: value.shape for key, value in module.state_dict().items()}
    with pytest.raises(ValueError) as refused:
        load_checked(module, state, known, "weights.pth")
    return str(refused.value)


def test_unexpected_keys_are_named_in_state_dict_order_whatever_the_files_order():
    first, second = _refusal(EXTRA), _refusal(EXTRA[::-1])
    assert first == second
    assert first.endswith("unexpected keys: " + ", ".join(ORDERED))


def test_a_long_list_names_the_first_keys_in_order_and_counts_them_all():
    keys = [f"extra.{i}.weight" for i in range(20)]
    message = _refusal(keys[::-1])
    assert message.endswith("unexpected keys: " + ", ".join(keys[:8]) + ", ... (20 in all)")


def test_a_classifier_head_left_out_is_named_weight_then_bias(tmp_path, caplog):
    """Files of the same tensors in other orders (a hand-made .pth with the bias first, a .safetensors file that
    orders its keys itself) give the same warning, naming the keys as torch orders them."""
    encoder = nn.Module()
    encoder.conv = nn.Conv2d(3, 4, 1)
    state = {"fc.bias": torch.zeros(2), **encoder.state_dict(), "fc.weight": torch.zeros(2, 4)}
    save_file(state, tmp_path / "encoder.safetensors")
    torch.save(state, tmp_path / "encoder.pth")
    with caplog.at_level(logging.WARNING, logger="coseg.models.pretrained"):
        load_encoder_weights(encoder, tmp_path / "encoder.safetensors")
        load_encoder_weights(encoder, tmp_path / "encoder.pth")
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(": ", 1)[1] for m in messages] == ["left out the classifier keys fc.weight, fc.bias (Module has "
                                                       "no classifier)"] * 2


def test_a_model_files_unexpected_keys_are_ordered_too(tmp_path):
    model = create_model("unet", encoder="resnet18", weights=None, embedding_dim=4)
    path = tmp_path / "edited.safetensors"
    write_checkpoint(path, {**model.state_dict(), **{key: torch.zeros(1) for key in EXTRA}}, model.config,
                     kind=MODEL_KIND)
    with pytest.raises(ValueError, match=re.escape(f"(unexpected keys: {', '.join(ORDERED)})")):
        load_model(path)
