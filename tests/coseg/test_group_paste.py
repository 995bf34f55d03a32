"""Group paste augmentation: donors from other groups, shrink-and-place geometry against loops, distractors only
remove foreground, background swaps keep the foreground, clear errors."""
from __future__ import annotations

import pytest
import torch

from coseg.data import GroupPaste
from coseg.data.group_paste import donors_of, shrink_and_place
from tests.helpers import assert_close


def square_batch(groups, size=32):
    """Distinct random images, each with a square foreground at its own place."""
    b = len(groups)
    images = torch.rand(b, 3, size, size)
    masks = torch.zeros(b, 1, size, size)
    for i in range(b):
        top, left = 2 + 3 * i, 4 + 2 * i
        masks[i, 0, top:top + 10, left:left + 8] = 1
    return images, masks, torch.tensor(groups)


def test_donors_come_from_other_groups():
    torch.manual_seed(0)
    groups = torch.tensor([0, 0, 1, 1, 1, 2])
    for _ in range(20):
        donors = donors_of(groups)
        assert (groups[donors] != groups).all()
    assert donors_of(torch.tensor([4, 4, 4])).tolist() == [-1, -1, -1]


def test_shrink_and_place_matches_loops():
    """A pixel at output position t comes from centre + (t − target) / factor of the source (bilinear): checked
    where the source position falls exactly on a pixel."""
    size = 33  # coordinates −1, −0.9375, ..., 1: steps of 1/16
    images = torch.rand(1, 3, size, size)
    masks = torch.zeros(1, 1, size, size)
    masks[0, 0, 12:21, 8:17] = 1  # centre: row 16, column 12 → x = −0.25, y = 0
    moved, moved_masks = shrink_and_place(images, masks, torch.tensor([0.5]), torch.tensor([[0.5, 0.25]]))
    coords = torch.linspace(-1, 1, size)
    checked = 0
    for row in range(size):
        for col in range(size):
            src_x = -0.25 + (float(coords[col]) - 0.5) / 0.5
            src_y = 0.0 + (float(coords[row]) - 0.25) / 0.5
            c, r = (src_x + 1) * 16, (src_y + 1) * 16
            if abs(c - round(c)) > 1e-4 or abs(r - round(r)) > 1e-4:
                continue
            c, r = round(c), round(r)
            inside = 0 <= c < size and 0 <= r < size
            expected = images[0, :, r, c] if inside else torch.zeros(3)
            assert_close(moved[0, :, row, col], expected, atol=1e-5, rtol=1e-5)
            assert float(moved_masks[0, 0, row, col]) == (float(masks[0, 0, r, c]) if inside else 0.0)
            checked += 1
    assert checked > 50
    assert float(moved_masks.sum()) == pytest.approx(float(masks.sum()) / 4, rel=0.25)  # area × factor²


def test_distractors_only_remove_foreground_and_come_from_another_group():
    torch.manual_seed(0)
    images, masks, groups = square_batch([0, 0, 1, 1])
    out, out_masks = GroupPaste(distractor_p=1.0, feather=0)(images, masks, groups)
    assert out.shape == images.shape and out_masks.shape == masks.shape
    assert ((out_masks == 0) | (out_masks == 1)).all()
    assert (out_masks <= masks).all()  # a pasted object is background; nothing becomes foreground
    changed = (out != images).any(dim=1, keepdim=True)
    assert changed.any(dim=(1, 2, 3)).all()  # every image received an object
    assert not (changed & (out_masks == 1)).any()  # pasted pixels are never labelled foreground


def test_background_swap_keeps_the_foreground_and_its_label():
    torch.manual_seed(0)
    images, masks, groups = square_batch([0, 0, 1, 1])
    out, out_masks = GroupPaste(distractor_p=0.0, background_p=1.0, feather=0)(images, masks, groups)
    assert torch.equal(out_masks, masks)
    fg = masks.bool().expand_as(images)
    assert torch.equal(out[fg], images[fg])
    for i in range(4):  # the background is that of an image of the other group
        background = ~masks[i, 0].bool()
        matches = [j for j in range(4) if torch.equal(out[i][:, background], images[j][:, background])]
        assert matches and all(groups[j] != groups[i] for j in matches)


def test_one_group_is_left_alone_and_bad_settings_are_refused():
    images, masks, groups = square_batch([3, 3, 3])
    out, out_masks = GroupPaste(1.0, 1.0)(images, masks, groups)
    assert torch.equal(out, images) and torch.equal(out_masks, masks)
    with pytest.raises(ValueError, match="distractor_p must lie in"):
        GroupPaste(distractor_p=1.5)
    with pytest.raises(ValueError, match="distractor_scale"):
        GroupPaste(distractor_scale=(0.0, 0.5))
    with pytest.raises(ValueError, match="masks"):
        GroupPaste()(images, masks[:, :, :5], groups)
