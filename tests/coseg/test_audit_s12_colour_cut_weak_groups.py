"""The group colour cut on weak, empty or nearly empty predictions (an under-trained model): masks stay empty where
nothing is foreground, a speck the network is sure of is kept, and a group with confident pixels is still cut."""
from __future__ import annotations

import numpy as np
import torch

from coseg.data import make_synthetic_coseg, read_image
from coseg.models import GroupColourCut


def synthetic_group(tmp_path, size: int = 128) -> torch.Tensor:
    """uint8 (5, 3, S, S): one generated group (a shape on colourful, blotchy backgrounds)."""
    root = make_synthetic_coseg(tmp_path, num_groups=1, images_per_group=5, size=size, seed=0)
    return torch.stack([torch.from_numpy(read_image(p)).permute(2, 0, 1) for p in sorted(root.rglob("images/*/*.jpg"))])


def test_empty_and_near_empty_groups_stay_empty_without_crashing(tmp_path):
    images = synthetic_group(tmp_path, size=32)
    for probs in (torch.zeros(5, 1, 32, 32), torch.full((5, 1, 32, 32), 0.49)):
        assert not GroupColourCut()(images, probs).any()
    for pixels in (1, 2, 5):  # a speck the network is sure of, the rest unsure: cut, and no crash on tiny models
        probs = torch.full((5, 1, 32, 32), 0.3)
        probs.view(-1)[:pixels] = 0.95
        masks = GroupColourCut()(images, probs)
        assert masks.shape == (5, 1, 32, 32) and bool(masks[probs >= 0.9].all())


def test_a_group_with_confident_foreground_is_still_cut(tmp_path):
    """The rule leaves the cut of a trained model's group alone: sure pixels present, the uncertain ones may flip."""
    images = synthetic_group(tmp_path, size=64)
    masks = torch.from_numpy(np.stack([read_image(p)[..., 0] > 127 for p in sorted(
        (tmp_path / "ground_truth").rglob("*.png"))]))[:, None]
    probs = torch.where(masks, 0.95, 0.05)
    probs[..., :, 32:] = torch.where(masks[..., :, 32:], 0.45, 0.3)  # the right half unsure
    cut = GroupColourCut()(images, probs)
    assert not torch.equal(cut, (probs >= 0.5).float())
