"""Audit (session 9) of the retrieval model: stages fixed by ``frozen_stages`` stay fixed with ``--no-freeze-bn``;
backbones that cannot embed the training images are refused before any image is decoded."""
from __future__ import annotations

import pytest
import torch

from apps.retrieval import train as train_module
from apps.retrieval.model import check_image_size, create_retrieval_model, load_retrieval_model
from apps.retrieval.train import train
from tests.apps.retrieval_runs import BACKBONE, tiny_config, tiny_set


def test_frozen_stages_keep_their_batchnorm_statistics_without_freeze_bn():
    """With freeze_bn off, the BatchNorm layers of the frozen stages updated their running statistics in train
    mode, so the 'fixed' stages changed their output as the backbone trained."""
    model = create_retrieval_model(BACKBONE, weights=None, embedding_dim=4, freeze_bn=False)
    model.freeze_stages(2)  # stem, blocks.0, blocks.1
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model.train()
    model(torch.rand(4, 3, 32, 32))
    after = model.backbone.state_dict()
    frozen = ("conv_stem.", "bn1.", "blocks.0.", "blocks.1.")
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith(frozen))
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("blocks.2.")
               and k.endswith("running_mean"))
    assert model.backbone.bn1.training is False and model.backbone.blocks[2][0].bn1.training is True
    model.eval().train()
    assert model.backbone.bn1.training is False


def test_finetuning_without_freeze_bn_leaves_the_frozen_stages_as_they_were(tmp_path):
    data = tiny_set(tmp_path / "data")
    run = tmp_path / "run"
    train(tiny_config(data, run, epochs=1, finetune_epochs=1, frozen_stages=2, freeze_bn=False, threads=1))
    before = load_retrieval_model(run / "last.safetensors").state_dict()  # the head stage's: backbone as built
    after = load_retrieval_model(run / "finetune" / "last.safetensors").state_dict()
    frozen = ("backbone.conv_stem.", "backbone.bn1.", "backbone.blocks.0.", "backbone.blocks.1.")
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith(frozen))
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("backbone.blocks.2."))


@pytest.mark.parametrize("backbone, message", [
    ("test_vit3", r"cannot embed 32×32-pixel images \(choose another image size or a convolutional backbone\): "
                  r"Input height \(32\) doesn't match model \(160\)"),
    ("test_maxvit", r"cannot embed 32×32-pixel images .*must be divisible by window"),
    ("test_mambaout", r"gives pooled features of shape \(1, 1\) for one image, not \(1, 64\)"),
])
def test_a_backbone_that_cannot_embed_the_images_is_refused_before_decoding(backbone, message, tmp_path, monkeypatch):
    """A fixed-size transformer crashed with timm's AssertionError (a traceback) once every image was decoded, and a
    channels-last backbone was pooled over its width and channels."""
    decoded = []
    monkeypatch.setattr(train_module, "load_training_data", lambda *a, **k: decoded.append(1))
    with pytest.raises(ValueError, match=f"^backbone '{backbone}' " + message):
        train(tiny_config(tmp_path / "data", tmp_path / "run", backbone=backbone))
    assert not decoded and not (tmp_path / "run").exists()


def test_the_image_size_check_leaves_the_model_as_it_was():
    model = create_retrieval_model(BACKBONE, weights=None, embedding_dim=4, freeze_bn=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_image_size(model, 32)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
