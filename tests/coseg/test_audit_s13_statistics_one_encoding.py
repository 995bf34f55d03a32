"""Group statistics measured in chunks (a group over ``STATISTICS_PIXELS``) encode each image once: the chunks'
encoder features taken for the group's consensus are decoded as they are, not encoded a second time, with the same
statistics and masks."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from coseg.models import GroupStatistics, cosegnet, create_model
from coseg.models.cosegnet import CosegNet

IMAGES, SIZE = 7, 64


@pytest.fixture(scope="module")
def group_model():
    torch.manual_seed(0)
    return create_model("unet", weights=None, embedding_dim=4, group_levels=2).eval()


def _measured(model: CosegNet, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, int]:
    """The blended BatchNorm statistics, the group's masks and how many images the encoder was given."""
    encoded = []
    hook = model.encoder.register_forward_pre_hook(lambda module, args: encoded.append(len(args[0])))
    try:
        with torch.inference_mode(), GroupStatistics(4.0).adapted(model, lambda: model._statistics_pass(x), IMAGES):
            statistics = [t.clone() for m in model.modules() if isinstance(m, nn.BatchNorm2d)
                          for t in (m.running_mean, m.running_var)]
            encoded_in_pass = sum(encoded)
    finally:
        hook.remove()
    return statistics, model.predict_group(x, chunk_size=4, statistics=GroupStatistics(4.0)), encoded_in_pass


def test_chunked_statistics_encode_each_image_once_with_the_same_results(group_model, monkeypatch):
    monkeypatch.setattr(cosegnet, "STATISTICS_PIXELS", 3 * SIZE * SIZE)  # chunks of 3, 3 and 1 images
    x = torch.rand(IMAGES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    statistics, masks, encoded = _measured(group_model, x)
    assert encoded == IMAGES
    chunk_outputs = CosegNet._chunk_outputs
    monkeypatch.setattr(CosegNet, "_chunk_outputs", lambda self, chunks, budget=0: chunk_outputs(self, chunks, 0))
    statistics_again, masks_again, encoded_again = _measured(group_model, x)  # encoded again, as before
    assert encoded_again == 2 * IMAGES
    for kept, again in zip(statistics, statistics_again):
        assert torch.equal(kept, again)
    assert torch.equal(masks, masks_again)


def test_without_consensus_chunks_are_measured_once_too(monkeypatch):
    torch.manual_seed(1)
    model = create_model("unet", weights=None, embedding_dim=4).eval()
    monkeypatch.setattr(cosegnet, "STATISTICS_PIXELS", 3 * SIZE * SIZE)
    _, masks, encoded = _measured(model, torch.rand(IMAGES, 3, SIZE, SIZE))
    assert encoded == IMAGES and masks.shape == (IMAGES, 1, SIZE, SIZE)
