"""The group model as a user calls it: ``predict(images, groups)`` with a group larger than ``max_references``, the
order of a group's images, a group of one image, and one image through decoders that pool it before BatchNorm."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from coseg.models import cosegnet, create_model
from coseg.models.group_consensus import GroupConsensus
from tests.helpers import assert_close

TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


def group_model(arch: str = "unet", group_levels: int = 2, seed: int = 0) -> cosegnet.CosegNet:
    torch.manual_seed(seed)
    model = create_model(arch, encoder="tu-resnet18", weights=None, embedding_dim=4, group_levels=group_levels)
    for module in model.group_consensus:  # fresh fusion layers are zero: make the group matter
        nn.init.normal_(module.fuse[-1].weight, std=0.5)
    return model.eval()


def images(n: int, seed: int = 1, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("limit", [3, 128])
def test_predict_with_groups_is_predict_group_of_each_group(limit):
    """``predict(x, groups)`` compared each image with every image of its group, ignoring ``max_references``: a
    group larger than it gave other masks than ``predict_group`` (and cost time quadratic in its size)."""
    model = group_model()
    model.max_references = limit
    x = images(9)
    groups = torch.tensor([1, 0, 1, 2, 0, 1, 0, 1, 1])
    for flip in (False, True):
        probs = model.predict(x, groups, flip=flip)
        for group in (0, 1, 2):
            members = torch.nonzero(groups == group).flatten()
            assert_close(probs[members], model.predict_group(x[members], chunk_size=2, flip=flip), **TOLERANCE)
    with pytest.raises(ValueError, match="groups"):
        model.predict(x, groups[:8])


def test_the_consensus_does_not_depend_on_the_order_of_a_groups_images():
    model = group_model()
    x = images(6)
    order = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    assert_close(model.predict(x[order], groups[order]), model.predict(x, groups)[order], **TOLERANCE)
    assert_close(model.predict_group(x[order], chunk_size=4), model.predict_group(x, chunk_size=4)[order],
                 **TOLERANCE)
    model.max_references = 4  # the references are chosen by content, not position
    assert_close(model.predict_group(x[order], chunk_size=4), model.predict_group(x, chunk_size=4)[order],
                 **TOLERANCE)


def test_a_group_of_one_image_gets_no_group_signal():
    """A group of one has no other image: its consensus maps are zero, whichever way it is predicted."""
    module = GroupConsensus(8)
    nn.init.normal_(module.fuse[-1].weight)
    module.eval()
    features = torch.randn(3, 8, 4, 4)
    alone = module(features, torch.tensor([0, 1, 2]))
    zero_maps = module.fuse_maps(features, torch.zeros(3, 2, 16))
    assert_close(alone, zero_maps, **TOLERANCE)
    model = group_model()
    x = images(3)
    one = model.predict_group(x[:1])
    assert_close(one, model.predict(x[:1]), **TOLERANCE)
    assert_close(model.predict(x), torch.cat([model.predict_group(x[i:i + 1]) for i in range(3)]), **TOLERANCE)


@pytest.mark.parametrize("arch", ["deeplabv3plus", "upernet"])
def test_one_image_predicts_through_decoders_that_pool_it_before_batchnorm(arch):
    """Training refuses a batch of one image for these decoders (tests/coseg/test_audit_models.py); in eval mode
    their BatchNorm uses its running statistics, so one image predicts, alone or as a group of one."""
    model = group_model(arch, group_levels=1)
    x = images(1)
    with torch.no_grad():
        logits = model(x).mask_logits
    probs = model.predict(x)
    assert probs.shape == (1, 1, 64, 64) and bool(torch.isfinite(probs).all())
    assert_close(probs, torch.sigmoid(logits), **TOLERANCE)
    assert_close(model.predict_group(x), probs, **TOLERANCE)
    assert_close(model.predict_chunk(x, model.group_context([x]), [0]), probs, **TOLERANCE)
    model.train()
    with pytest.raises(ValueError, match=f"a training batch of one image, whose features the {arch} decoder"):
        model(x)
