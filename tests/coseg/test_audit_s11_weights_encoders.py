"""Local weights files for non-timm smp encoders as users bring them: smp's MiT and DenseNet encoders (whose
load_state_dict takes no ``strict``) and the classifier files smp's efficientnet-b*/se_resnet* weights come from
(``_fc.``, ``last_linear.`` heads)."""
from __future__ import annotations

import logging

import pytest
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import save_file

from coseg.models import create_model, load_encoder_weights


@pytest.mark.parametrize("encoder", ["mit_b0", "densenet121"])
def test_a_local_file_for_an_encoder_whose_load_state_dict_takes_no_strict_loads(tmp_path, encoder):
    source = smp.encoders.get_encoder(encoder, weights=None)
    path = tmp_path / f"{encoder}.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, path)
    model = create_model("unet", encoder=encoder, weights=path, semantic_prior=False, embedding_dim=8)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key


def test_a_mit_b0_file_of_another_shape_is_refused_naming_the_file(tmp_path):
    state = smp.encoders.get_encoder("mit_b0", weights=None).state_dict()
    state["patch_embed1.proj.bias"] = torch.zeros(3)
    path = tmp_path / "mit_b0.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"mit_b0.pth does not fit MixVisionTransformerEncoder: shape mismatches "
                                         r"\(given vs model\): patch_embed1.proj.bias \(3,\) vs \(32,\)"):
        load_encoder_weights(smp.encoders.get_encoder("mit_b0", weights=None), path)


@pytest.mark.parametrize("encoder, head", [("efficientnet-b0", "_fc."), ("se_resnet50", "last_linear.")])
def test_a_classifier_file_of_smps_weight_sources_loads_without_its_head(tmp_path, caplog, encoder, head):
    source = smp.encoders.get_encoder(encoder, weights=None)
    state = dict(source.state_dict())
    state[head + "weight"], state[head + "bias"] = torch.zeros(1000, source.out_channels[-1]), torch.zeros(1000)
    path = tmp_path / f"{encoder}.pth"
    torch.save(state, path)
    target = smp.encoders.get_encoder(encoder, weights=None)
    with caplog.at_level(logging.WARNING, logger="coseg.models.pretrained"):
        load_encoder_weights(target, path)
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: left out the classifier keys {head}weight, {head}bias ({type(target).__name__} has no classifier)"]
