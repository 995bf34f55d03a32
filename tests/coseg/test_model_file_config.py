"""Model files are shared between users: each field of the saved config, and the recorded image size, is checked on
load and a wrong one is named with the file, instead of failing deep inside or loading a different model."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from coseg.checkpoints import load_for_inference
from coseg.models import CosegEnsemble, create_model, load_ensemble, load_model
from coseg.models.checkpoint import write_checkpoint
from tests.helpers import assert_fields_are_the_builders


@pytest.fixture(scope="module")
def unet():
    return create_model("unet", weights=None, embedding_dim=8)


BAD_FIELDS = [
    ("embedding_dim", 3.5, "an integer >= 1, got 3.5"),  # was: "out_channels must be divisible by groups"
    ("embedding_dim", "8", 'an integer >= 1, got "8"'),
    ("embedding_dim", [8], r"an integer >= 1, got \[8\]"),
    ("embedding_dim", True, "an integer >= 1, got true"),
    ("embedding_hidden_channels", 16.5, "an integer >= 1, got 16.5"),
    ("embedding_stride", 4.0, "an integer >= 1, got 4.0"),  # was: loaded
    ("embedding_stride", 0, "an integer >= 1, got 0"),
    ("group_levels", True, "an integer >= 0, got true"),  # was: a one-level model and a state dict error
    ("semantic_prior", 0, "true or false, got 0"),  # was: loaded
    ("semantic_prior", "false", 'true or false, got "false"'),  # was: "a semantic prior ... needs group_levels"
    ("frozen_prior", None, "true or false, got null"),
    ("mean", [True, 0.5, 0.5], r"a list of 3 finite numbers, got \[true, 0.5, 0.5\]"),  # was: loaded
    ("mean", "0.5", 'a list of 3 finite numbers, got "0.5"'),  # was: "could not convert string to float: '.'"
    ("std", [float("nan"), 1, 1], r"a list of 3 finite positive numbers, got \[NaN, 1, 1\]"),  # was: loaded
    ("arch", None, "a non-empty string, got null"),
    ("encoder", None, "a non-empty string, got null"),  # was: AttributeError: 'NoneType' ... 'startswith'
    ("encoder", ["tu-resnet18"], "a non-empty string"),
]


@pytest.mark.parametrize("field, value, words", BAD_FIELDS, ids=[f"{f}={v!r}" for f, v, _ in BAD_FIELDS])
def test_a_wrong_config_field_is_named_with_the_file(tmp_path, unet, field, value, words):
    path = tmp_path / "shared.safetensors"
    write_checkpoint(path, unet.state_dict(), {**unet.config, field: value})
    with pytest.raises(ValueError, match=f"shared.safetensors: model config field '{field}' must be {words}"):
        load_model(path)


def test_an_unknown_config_field_is_named(tmp_path, unet):
    path = tmp_path / "shared.safetensors"
    write_checkpoint(path, unet.state_dict(), {**unet.config, "image_size": "224"})
    with pytest.raises(ValueError, match="shared.safetensors: its model config has an unknown field 'image_size'"):
        load_model(path)


def test_a_wrong_ensemble_member_field_is_named(tmp_path, unet):
    path = tmp_path / "ensemble.safetensors"
    ensemble = CosegEnsemble([unet, unet])
    config = json.loads(json.dumps(ensemble.config))
    config["members"][1]["embedding_dim"] = 3.5
    write_checkpoint(path, ensemble.state_dict(), config)
    with pytest.raises(ValueError, match=r"ensemble.safetensors: model config field 'members\[1\].embedding_dim' "
                                         "must be an integer >= 1, got 3.5"):
        load_model(path)
    for members in ([], "unet", [1]):
        write_checkpoint(path, ensemble.state_dict(), {"members": members})
        with pytest.raises(ValueError, match="ensemble.safetensors: model config field 'members' must be a "
                                             "non-empty list"):
            load_model(path)


def test_the_checked_fields_are_the_builders_arguments(tmp_path, unet):
    from coseg.models.model_file import COSEGNET_FIELDS

    assert_fields_are_the_builders(COSEGNET_FIELDS, create_model, unet, load_model, tmp_path / "model.safetensors")


def test_a_file_of_an_older_version_without_some_fields_loads(tmp_path, unet):
    path = tmp_path / "old.safetensors"
    config = {k: v for k, v in unet.config.items() if k not in ("frozen_prior", "semantic_prior")}
    write_checkpoint(path, unet.state_dict(), config)
    assert load_model(path).config == unet.config


@pytest.mark.parametrize("size", ["abc", "3.5", "-224", "0", " 224", ""])
def test_a_wrong_recorded_image_size_is_named(tmp_path, unet, size):
    good, bad = tmp_path / "good.safetensors", tmp_path / "bad.safetensors"
    unet.save(good, metadata={"image_size": "224"})
    unet.save(bad, metadata={"image_size": size})
    with pytest.raises(ValueError, match=f"bad.safetensors: its metadata 'image_size' must be a positive integer, "
                                         f"got '{size}'"):
        load_ensemble([good, bad])
    with pytest.raises(ValueError, match="bad.safetensors: its metadata 'image_size' must be a positive integer"):
        load_for_inference(bad, torch.device("cpu"))  # was: int()'s "invalid literal", the file unnamed
    assert load_for_inference(good, torch.device("cpu"))[1] == 224


def test_recorded_image_sizes_are_compared_as_numbers(tmp_path, unet):
    a, b, c = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    other = copy.deepcopy(unet)  # another model: the same one twice is refused
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    unet.save(a, metadata={"image_size": "224"})
    other.save(b, metadata={"image_size": "0224"})
    unet.save(c)
    ensemble, size = load_ensemble([a, b])
    assert size == 224 and len(ensemble.members) == 2
    with pytest.raises(ValueError, match="different image sizes: .*a.safetensors: 224, .*c.safetensors: not recorded"):
        load_ensemble([a, c])
