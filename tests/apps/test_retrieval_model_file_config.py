"""Retrieval model files are shared between users: each field of the saved config is checked on load and a wrong
one is named with the file, instead of failing deep inside or loading a different model."""
from __future__ import annotations

import pytest

from apps.retrieval import create_retrieval_model, load_retrieval_model
from apps.retrieval.model import RETRIEVAL_FIELDS
from coseg.models.checkpoint import write_checkpoint
from tests.helpers import assert_fields_are_the_builders


@pytest.fixture(scope="module")
def model():
    return create_retrieval_model(weights=None, pooling="gem", embedding_dim=8, pool_stages=[4])


BAD_FIELDS = [
    ("embedding_dim", 3.5, "an integer >= 1, got 3.5"),  # was: "does not fit create_retrieval_model's arguments"
    ("embedding_dim", True, "an integer >= 1, got true"),
    ("embedding_dim", 0, "an integer >= 1, got 0"),  # saved sizes are resolved: 0 is never written
    ("backbone", None, "a non-empty string, got null"),  # was: AttributeError: 'NoneType' ... 'split'
    ("backbone", "", "a non-empty string"),
    ("pooling", None, "a non-empty string, got null"),  # was: "unknown pooling 'None'"
    ("freeze_bn", "false", 'true or false, got "false"'),  # was: loaded, BatchNorm frozen
    ("freeze_bn", 0, "true or false, got 0"),  # was: loaded
    ("flip_average", "no", 'true or false, got "no"'),  # was: loaded, mirror-averaging
    ("flip_average", None, "true or false, got null"),  # was: loaded
    ("mean", "0.5", 'a list of 3 finite numbers, got "0.5"'),  # was: "could not convert string to float: '.'"
    ("mean", [True, 0.5, 0.5], r"a list of 3 finite numbers, got \[true, 0.5, 0.5\]"),  # was: loaded
    ("mean", None, "a list of 3 finite numbers, got null"),  # was: loaded with the backbone's default
    ("std", [float("nan"), 1, 1], r"a list of 3 finite positive numbers, got \[NaN, 1, 1\]"),  # was: loaded
    ("pool_stages", [4.0], r"a list of integers >= 0, got \[4.0\]"),  # was: loaded
    ("pool_stages", [True], r"a list of integers >= 0, got \[true\]"),
    ("pool_stages", "4", 'a list of integers >= 0, got "4"'),
    ("pool_stages", None, "a list of integers >= 0, got null"),
]


@pytest.mark.parametrize("field, value, words", BAD_FIELDS, ids=[f"{f}={v!r}" for f, v, _ in BAD_FIELDS])
def test_a_wrong_config_field_is_named_with_the_file(tmp_path, model, field, value, words):
    path = tmp_path / "shared.safetensors"
    write_checkpoint(path, model.state_dict(), {**model.config, field: value})
    with pytest.raises(ValueError, match=f"shared.safetensors: model config field '{field}' must be {words}"):
        load_retrieval_model(path)


def test_an_unknown_config_field_is_named(tmp_path, model):
    path = tmp_path / "shared.safetensors"
    write_checkpoint(path, model.state_dict(), {**model.config, "image_size": 224})
    with pytest.raises(ValueError, match="shared.safetensors: its model config has an unknown field 'image_size'"):
        load_retrieval_model(path)


def test_the_checked_fields_are_the_builders_arguments(tmp_path, model):
    assert_fields_are_the_builders(RETRIEVAL_FIELDS, create_retrieval_model, model, load_retrieval_model,
                                   tmp_path / "model.safetensors")


def test_a_file_of_an_older_version_without_some_fields_loads(tmp_path, model):
    path = tmp_path / "old.safetensors"
    config = {k: v for k, v in model.config.items() if k != "flip_average"}
    write_checkpoint(path, model.state_dict(), config)
    assert load_retrieval_model(path).config == model.config
