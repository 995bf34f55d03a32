"""Group paste augmentation: donors from other groups, shrink-and-place geometry and the whole augmentation against
loops, distractors only remove foreground, background swaps keep the foreground, common backgrounds come from one
other group per group, mask dtypes, clear errors."""
from __future__ import annotations

import math

import pytest
import torch

from coseg.data import GroupPaste
from coseg.data.group_paste import common_background_donors, donors_of, shrink_and_place
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


def looped_common_donors(groups, p):
    """common_background_donors with loops, drawing its random numbers in its order: keys (G, G), draws (G)."""
    ids = sorted(set(groups))
    keys, drawn = torch.rand(len(ids), len(ids)), torch.rand(len(ids))
    members = {g: [i for i, h in enumerate(groups) if h == g] for g in ids}
    donors = []
    for i, g in enumerate(groups):
        a = ids.index(g)
        if len(ids) < 2 or drawn[a] >= p:
            donors.append(-1)
            continue
        other = ids[max((b for b in range(len(ids)) if b != a), key=lambda b: float(keys[a, b]))]
        donors.append(members[other][members[g].index(i) % len(members[other])])
    return donors


@pytest.mark.parametrize("groups", [[3, 0, 3, 1, 1, 3, 0], [5, 5, 2, 2], [1, 1, 1]])
def test_common_background_donors_match_loops_and_give_each_group_one_other_group(groups):
    drawn = 0
    for seed in range(10):
        torch.manual_seed(seed)
        donors = common_background_donors(torch.tensor(groups), 0.6)
        torch.manual_seed(seed)
        assert donors.tolist() == looped_common_donors(groups, 0.6)
        drawn += int((donors >= 0).any())
        for g in set(groups):
            of_group = [d for i, d in enumerate(donors.tolist()) if groups[i] == g]
            if of_group[0] >= 0:  # drawn: all its images on images of one other group
                assert len({groups[d] for d in of_group}) == 1 and groups[of_group[0]] != g
            else:
                assert set(of_group) == {-1}
    assert drawn > 0 if len(set(groups)) > 1 else drawn == 0
    assert common_background_donors(torch.tensor(groups), 0.0).tolist() == [-1] * len(groups)


def test_common_background_puts_every_image_of_a_group_on_the_other_groups_images():
    torch.manual_seed(0)
    images, masks, groups = square_batch([0, 1, 0, 1, 0], size=24)
    out, out_masks = GroupPaste(distractor_p=0.0, feather=0, common_background_p=1.0)(images, masks, groups)
    assert torch.equal(out_masks, masks)
    fg = masks.bool().expand_as(images)
    assert torch.equal(out[fg], images[fg])  # the foreground kept
    donor_of = {0: 1, 1: 0, 2: 3, 3: 2, 4: 1}  # group 0's k-th image takes group 1's (k mod 2)-th, and back
    for i, d in donor_of.items():
        assert torch.equal(out[i][~fg[i]], images[d][~fg[i]])


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


def test_feathering_leaves_a_foreground_that_fills_the_frame_intact():
    images, _, groups = square_batch([0, 1], size=16)
    masks = torch.ones(2, 1, 16, 16)
    out, out_masks = GroupPaste(distractor_p=0.0, background_p=1.0, feather=1.5)(images, masks, groups)
    assert_close(out, images)  # no donor background bleeds in along the frame
    assert torch.equal(out_masks, masks)


@pytest.mark.parametrize("groups", [[0, 0, 1, 1], [2, 2, 2, 2]], ids=["two_groups", "one_group"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.long, torch.float32])
def test_masks_keep_their_dtype(groups, dtype):
    images, masks, groups = square_batch(groups)
    _, out_masks = GroupPaste(distractor_p=1.0, background_p=1.0)(images, masks.to(dtype), groups)
    assert out_masks.dtype == dtype and set(out_masks.unique().tolist()) <= {0, 1}


def looped_paste(images, masks, groups, distractor_p, background_p, scale, feather):
    """GroupPaste pixel by pixel, drawing its random numbers in its order: donor keys (B, B), swap and paste draws
    (B each), then scale factors (B) and object centres (B, 2). Border pixels are replicated for the feathering."""
    b, _, h, w = images.shape
    keys, swap_draw, paste_draw = torch.rand(b, b), torch.rand(b), torch.rand(b)
    factors = torch.empty(b).uniform_(*scale)
    targets = torch.rand(b, 2) * 1.4 - 0.7
    radius = max(1, math.ceil(2 * feather))
    kernel = [math.exp(-0.5 * (d / feather) ** 2) for d in range(-radius, radius + 1)]
    kernel = [k / sum(kernel) for k in kernel]

    def soft(m, r, c):
        return sum(kernel[i] * kernel[j] * float(m[min(max(r + i - radius, 0), h - 1),
                                                   min(max(c + j - radius, 0), w - 1)])
                   for i in range(2 * radius + 1) for j in range(2 * radius + 1))

    def bilinear(x, col, row):  # (C, h, w), pixel coordinates; zero outside
        c0, r0 = math.floor(col), math.floor(row)
        value = torch.zeros(x.shape[0], dtype=x.dtype)
        for r, c, weight in ((r0, c0, (1 - row + r0) * (1 - col + c0)), (r0, c0 + 1, (1 - row + r0) * (col - c0)),
                             (r0 + 1, c0, (row - r0) * (1 - col + c0)), (r0 + 1, c0 + 1, (row - r0) * (col - c0))):
            if 0 <= r < h and 0 <= c < w:
                value += weight * x[:, r, c]
        return value

    out, out_masks = images.clone(), masks.clone()
    donor = [max((j for j in range(b) if groups[j] != groups[i]), key=lambda j: float(keys[i, j])) for i in range(b)]
    for i in range(b):
        if swap_draw[i] < background_p:
            for r in range(h):
                for c in range(w):
                    keep = soft(masks[i, 0], r, c)
                    out[i, :, r, c] = keep * images[i, :, r, c] + (1 - keep) * images[donor[i], :, r, c]
    swapped = out.clone()
    for i in range(b):
        if paste_draw[i] >= distractor_p:
            continue
        source, source_mask = swapped[donor[i]], masks[donor[i], 0]
        fg = source_mask.nonzero().double()
        centre_row, centre_col = fg.mean(0).tolist()
        moved_mask = torch.zeros(h, w)
        colour = torch.zeros(3, h, w)
        for r in range(h):
            for c in range(w):
                x = 2 * centre_col / (w - 1) - 1 + (2 * c / (w - 1) - 1 - float(targets[i, 0])) / float(factors[i])
                y = 2 * centre_row / (h - 1) - 1 + (2 * r / (h - 1) - 1 - float(targets[i, 1])) / float(factors[i])
                col, row = (x + 1) * (w - 1) / 2, (y + 1) * (h - 1) / 2
                colour[:, r, c] = bilinear(source, col, row)
                moved_mask[r, c] = float(bilinear(source_mask[None], col, row)[0] > 0.5)
        for r in range(h):
            for c in range(w):
                alpha = soft(moved_mask, r, c)
                out[i, :, r, c] = alpha * colour[:, r, c] + (1 - alpha) * out[i, :, r, c]
                if alpha > 0.5:
                    out_masks[i, 0, r, c] = 0
    return out, out_masks


@pytest.mark.parametrize("groups, covered", [([0, 0, 1, 2], True), ([0, 1], False)], ids=["four", "two"])
def test_matches_a_looped_reference(groups, covered):
    """12 × 12 images: image 0 without foreground (as donor it gives no object), the others with a 6 × 6 square
    (the last touching the frame); each batch has a swap and a paste, the first also an image with both."""
    b = len(groups)
    images, masks = torch.rand(b, 3, 12, 12), torch.zeros(b, 1, 12, 12)
    for i, (top, left) in enumerate([(2, 1), (4, 5), (6, 3)][:b - 1], start=1):
        masks[i, 0, top:top + 6, left:left + 6] = 1
    paste = GroupPaste(distractor_p=0.6, background_p=0.5, distractor_scale=(0.4, 0.8), feather=1.0)
    torch.manual_seed(0)
    out, out_masks = paste(images, masks, torch.tensor(groups))
    torch.manual_seed(0)
    expected, expected_masks = looped_paste(images, masks, groups, 0.6, 0.5, (0.4, 0.8), 1.0)
    assert_close(out, expected.clamp(0, 1))
    assert torch.equal(out_masks, expected_masks)
    assert torch.equal(out_masks, masks) != covered  # a pasted object covers some foreground in the first batch


def test_training_pastes_with_the_configured_probabilities(tmp_path, monkeypatch):
    import coseg.train
    from coseg.config import CosegTrainConfig
    from tests.coseg.pipeline_fixtures import synthetic_set

    seen = []

    class Recorded(GroupPaste):
        def forward(self, images, masks, groups):
            seen.append((self.distractor_p, self.background_p, self.common_background_p, len(set(groups.tolist()))))
            return super().forward(images, masks, groups)

    monkeypatch.setattr(coseg.train, "GroupPaste", Recorded)
    cfg = CosegTrainConfig(data=str(synthetic_set(tmp_path / "data", groups=3, images=2)), output=str(tmp_path / "run"),
                           members=1, weights=None, image_size=64, groups_per_batch=2, images_per_group=2,
                           triplet_pixels=4, val_fraction=0.0, epochs=1, device="cpu", quiet=True,
                           paste_background_p=0.25, paste_common_background_p=0.75)
    coseg.train.train(cfg)
    assert seen and all(s == (0.0, 0.25, 0.75, 2) for s in seen)
