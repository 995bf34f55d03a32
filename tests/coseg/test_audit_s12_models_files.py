"""Model files as users mistake them: a torch.save file given as the model file, a file whose weights are of
another architecture than its config."""
from __future__ import annotations

import pytest
import torch

from coseg.models import create_model, load_model
from coseg.models.checkpoint import read_checkpoint, write_checkpoint


@pytest.mark.parametrize("zipped", [True, False])
def test_a_torch_save_file_is_named_as_such_and_never_unpickled(tmp_path, zipped, monkeypatch):
    """Was: 'model.pth is not a safetensors model file (header length 578712552184433488 is over 100000000
    bytes)', which does not say what the file is."""
    model = create_model("unet", encoder="tu-resnet18", weights=None, embedding_dim=4)
    path = tmp_path / "model.pth"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=zipped)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a model file must not be unpickled")

    monkeypatch.setattr(torch, "load", no_unpickling)
    with pytest.raises(ValueError, match=r"model.pth is not a safetensors model file \(it is a file torch.save "
                                         r"wrote, a zip archive or a pickle\); .*\(pickled .pt/.pth files are refused"):
        load_model(path)


def test_weights_of_another_architecture_than_the_config_are_named(tmp_path):
    unet = create_model("unet", encoder="tu-resnet18", weights=None, embedding_dim=4, group_levels=1)
    fpn = create_model("fpn", encoder="tu-resnet18", weights=None, embedding_dim=4, group_levels=1)
    unet.save(tmp_path / "unet.safetensors")
    _, config, _ = read_checkpoint(tmp_path / "unet.safetensors")
    write_checkpoint(tmp_path / "mixed.safetensors", fpn.state_dict(), config, kind="co-segmentation")
    with pytest.raises(ValueError, match=r"mixed.safetensors: its weights do not fit the model its config describes "
                                         r"\(missing keys: decoder\..*; unexpected keys: decoder\."):
        load_model(tmp_path / "mixed.safetensors")
