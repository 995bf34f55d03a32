"""Model files and weights files whose tensors are not in the model's dtypes: a float64 file loads into the float32
model rounded to its precision (the model runs in float32) and integer buffers stay integers with their values;
a value the model's dtype cannot hold is refused, naming the file and the tensor, instead of loaded as inf or cut."""
from __future__ import annotations

import re

import pytest
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import save_file

from coseg.models import create_model, load_encoder_weights, load_model
from coseg.models.checkpoint import write_checkpoint

WEIGHT = "mask_head.weight"
COUNTER = "encoder.model.bn1.num_batches_tracked"


@pytest.fixture(scope="module")
def trained():
    """A small model whose BatchNorm counters and statistics moved away from their initial values."""
    model = create_model("unet", weights=None, embedding_dim=4).train()
    for _ in range(3):
        model(torch.rand(2, 3, 64, 64))
    return model.eval()


def test_a_float64_model_file_loads_as_the_float32_model(tmp_path, trained):
    """Every tensor converted to float64, the counters too (as ``{k: v.double()}`` does)."""
    state = trained.state_dict()
    assert int(state[COUNTER]) == 3 and state[COUNTER].dtype == torch.int64
    path = tmp_path / "float64.safetensors"
    write_checkpoint(path, {k: v.double() for k, v in state.items()}, trained.config)
    loaded = load_model(path).eval()
    for key, value in loaded.state_dict().items():
        assert value.dtype == state[key].dtype and torch.equal(value, state[key]), key
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x).mask_logits, trained(x).mask_logits)


def test_float64_values_are_rounded_to_float32(tmp_path, trained):
    state = {k: v.double() for k, v in trained.state_dict().items()}
    state[WEIGHT] = state[WEIGHT] + 1e-12  # below float32's precision
    path = tmp_path / "float64.safetensors"
    write_checkpoint(path, state, trained.config)
    loaded = load_model(path).state_dict()[WEIGHT]
    assert loaded.dtype == torch.float32 and torch.equal(loaded, state[WEIGHT].float())


@pytest.mark.parametrize("key, value, shown", [
    (WEIGHT, 1e300, "1e+300"),  # was: loaded as inf
    (COUNTER, 2.5, "2.5"),  # was: loaded as 2
    (COUNTER, float("nan"), "nan"),  # was: loaded as an arbitrary integer
    (COUNTER, 1e30, "1e+30"),  # beyond int64
])
def test_a_value_the_model_cannot_hold_is_refused(tmp_path, trained, key, value, shown):
    state = {k: v.double() for k, v in trained.state_dict().items()}
    state[key] = state[key].clone()
    state[key].view(-1)[0] = value
    path = tmp_path / "float64.safetensors"
    write_checkpoint(path, state, trained.config)
    words = f"tensor '{key}' \\(torch.float64\\) holds {re.escape(shown)}, which the model's torch.(float32|int64)"
    with pytest.raises(ValueError, match=f"float64.safetensors: {words} for it cannot hold"):
        load_model(path)


def test_a_float64_weights_file_loads_into_the_encoder(tmp_path):
    source = smp.encoders.get_encoder("resnet18", weights=None)
    state = source.state_dict()
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.double() for k, v in state.items()}, path)
    encoder = smp.encoders.get_encoder("resnet18", weights=None)
    load_encoder_weights(encoder, path)
    for key, value in encoder.state_dict().items():
        assert value.dtype == state[key].dtype and torch.equal(value, state[key]), key
    overflowing = {k: v.double() for k, v in state.items()}
    overflowing["conv1.weight"][0, 0, 0, 0] = -1e300
    save_file(overflowing, path)
    with pytest.raises(ValueError, match="resnet18.safetensors: tensor 'conv1.weight' .* holds -1e\\+300"):
        load_encoder_weights(encoder, path)
