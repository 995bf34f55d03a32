"""GroupPaste refuses masks that are not 0/1 (a 0/255 mask weighed the images by 255) and a negative feather."""
from __future__ import annotations

import pytest
import torch

from coseg.data import GroupPaste


@pytest.mark.parametrize("foreground, shown", [(255, "255"), (0.5, "0.5")])
def test_masks_of_other_values_than_0_and_1_are_refused_naming_them(foreground, shown):
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(4, 1, 8, 8)
    masks[..., 2:6, 2:6] = foreground
    with pytest.raises(ValueError, match=rf"masks must hold 0 \(background\) and 1 \(foreground\) only, found 0, "
                                         rf"{shown}$"):
        GroupPaste(distractor_p=1.0, background_p=1.0)(images, masks, torch.tensor([0, 0, 1, 1]))


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.float16])
def test_binary_masks_of_any_dtype_are_taken(dtype):
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(4, 1, 8, 8, dtype=dtype)
    masks[..., 2:6, 2:6] = 1
    _, out = GroupPaste(distractor_p=0.0, background_p=1.0)(images, masks, torch.tensor([0, 0, 1, 1]))
    assert out.dtype == dtype and torch.equal(out, masks)


def test_a_negative_feather_is_refused():
    with pytest.raises(ValueError, match=r"feather \(pixels\) must be >= 0 \(0: hard edges\), got -1.5"):
        GroupPaste(feather=-1.5)
