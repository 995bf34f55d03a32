"""Audit of GroupPaste: a batch of no image passes through unchanged, like a batch of one group."""
from __future__ import annotations

import torch

from coseg.data import GroupPaste
from coseg.data.group_paste import common_background_donors, donors_of


def test_no_image_has_no_donor():
    assert donors_of(torch.zeros(0, dtype=torch.long)).shape == (0,)
    assert common_background_donors(torch.zeros(0, dtype=torch.long), 1.0).shape == (0,)


def test_an_empty_batch_passes_through_unchanged():
    images = torch.zeros(0, 3, 8, 8)
    masks = torch.zeros(0, 1, 8, 8, dtype=torch.uint8)
    out, out_masks = GroupPaste(1.0, 1.0, common_background_p=1.0)(images, masks, torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 3, 8, 8) and out.dtype == images.dtype
    assert out_masks.shape == (0, 1, 8, 8) and out_masks.dtype == torch.uint8
