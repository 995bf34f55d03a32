"""The group colour cut on a weak or empty prediction (an under-trained model): with no pixel the network is sure
of, a fit on its few unsure foreground pixels made up a foreground colour and grew masks out of nothing (a guess of
2 % of an image became 99 % of it); such a group keeps its thresholded masks."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from coseg.data import make_synthetic_coseg, read_image
from coseg.models import GroupColourCut


def synthetic_group(tmp_path, size: int = 128) -> torch.Tensor:
    """uint8 (5, 3, S, S): one generated group (a shape on colourful, blotchy backgrounds)."""
    root = make_synthetic_coseg(tmp_path, num_groups=1, images_per_group=5, size=size, seed=0)
    return torch.stack([torch.from_numpy(read_image(p)).permute(2, 0, 1) for p in sorted(root.rglob("images/*/*.jpg"))])


def weak_guesses(n: int, size: int, trials: int) -> list[torch.Tensor]:
    """What an under-trained model says: probabilities (n, 1, S, S) of 0.2-0.45, a few patches at 0.6, none sure."""
    g = torch.Generator().manual_seed(0)
    guesses = []
    for _ in range(trials):
        probs = 0.2 + 0.25 * torch.rand(n, 1, size // 8, size // 8, generator=g)
        probs[torch.rand(probs.shape, generator=g) < 0.04] = 0.6
        guesses.append(F.interpolate(probs, size=(size, size), mode="bilinear", align_corners=False))
    return guesses


def test_a_group_without_confident_foreground_keeps_its_thresholded_masks(tmp_path):
    images = synthetic_group(tmp_path)
    for probs in weak_guesses(len(images), images.shape[-1], trials=4):
        assert float(probs.max()) < GroupColourCut().sure
        cut = GroupColourCut()(images, probs)
        assert torch.equal(cut, (probs >= 0.5).float())


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
