"""Audit of GroupPaste: settings that cannot work are refused when it is made, naming them."""
from __future__ import annotations

import math

import pytest
import torch

from coseg.data import GroupPaste


@pytest.mark.parametrize("kwargs, message", [
    (dict(distractor_scale=(0.5, math.inf)), "distractor_scale must be"),
    (dict(distractor_scale=(0.5,)), "distractor_scale must be"),
    (dict(distractor_scale=(math.nan, 0.5)), "distractor_scale must be"),
    (dict(feather=math.nan), r"feather \(pixels\) must be a finite number"),
    (dict(feather=math.inf), r"feather \(pixels\) must be a finite number"),
])
def test_unusable_settings_are_refused_when_made(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GroupPaste(1.0, **kwargs)


def test_probabilities_zero_leave_the_batch_as_it_was_and_one_pastes_into_every_image():
    torch.manual_seed(0)
    images = torch.rand(6, 3, 16, 16)
    masks = torch.zeros(6, 1, 16, 16, dtype=torch.uint8)
    masks[:, :, 4:12, 4:12] = 1
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    out, out_masks = GroupPaste(0.0, 0.0, common_background_p=0.0)(images, masks, groups)
    assert torch.equal(out, images) and torch.equal(out_masks, masks) and out_masks.dtype == torch.uint8
    out, out_masks = GroupPaste(1.0, 0.0, distractor_scale=(0.5, 0.5), feather=0)(images, masks, groups)
    assert all(not torch.equal(out[i], images[i]) for i in range(6))
    assert out_masks.dtype == torch.uint8 and bool((out_masks <= masks).all()) and 0 <= out.min() <= out.max() <= 1
