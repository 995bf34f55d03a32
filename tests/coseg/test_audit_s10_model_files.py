"""Audit s10: model files whose config does not fit their weights, or whose config is damaged, are refused in one
line naming the file."""
import pytest
import torch

from coseg.models import create_model, load_model
from coseg.models.checkpoint import write_checkpoint
from coseg.models.cosegnet import MODEL_KIND


@pytest.fixture(scope="module")
def model():
    return create_model("unet", weights=None, embedding_dim=4, group_levels=1)


@pytest.mark.parametrize("change, words", [
    ({"arch": "fpn"}, r"\(missing keys: decoder\.p5\.weight, .*\(\d+ in all\); unexpected keys: .*\(\d+ in all\); "),
    ({"group_levels": 0}, r"\(unexpected keys: .*group_consensus\.0\..*\(\d+ in all\)\)"),
    ({"embedding_dim": 8}, r"\(shape mismatches \(given vs model\): embedding_head\.layers\.3\.weight "
                           r"\(4, \d+, 1, 1\) vs \(8, \d+, 1, 1\), embedding_head\.layers\.3\.bias \(4,\) vs \(8,\)\)"),
])
def test_weights_of_another_architecture_are_named_in_one_line(tmp_path, model, change, words):
    path = tmp_path / "edited.safetensors"
    write_checkpoint(path, model.state_dict(), {**model.config, **change}, kind=MODEL_KIND)
    with pytest.raises(ValueError) as error:
        load_model(path)
    message = str(error.value)
    assert "\n" not in message and len(message) < 1500  # was torch's list of every key, over lines (4 kB for fpn)
    assert message.startswith(f"{path}: its weights do not fit the model its config describes (")
    assert error.match(words)


@pytest.mark.parametrize("members", [5, True])
def test_an_ensemble_config_whose_members_are_not_a_list_names_the_file(tmp_path, members):
    path = tmp_path / "damaged.safetensors"
    write_checkpoint(path, {"x": torch.zeros(1)}, {"members": members}, kind=MODEL_KIND)
    with pytest.raises(ValueError, match=rf"^{path}: model config field 'members' must be a non-empty list"):
        load_model(path)  # was: TypeError: 'int' object is not iterable
