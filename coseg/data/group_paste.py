"""Group paste augmentation: new training groups out of a batch of groups, teaching what "in common" means.

A batch holds several groups (P groups × K images). Three batch-level operations on images and masks:

- **distractors**: an object cut from an image of *another* group (its ground-truth foreground), shrunk and put
  at a random place, is pasted into an image and labelled background. A salient object that the rest of the
  group lacks is not the common object, so a model that only finds salient things is wrong on it; the group
  consensus has to tell them apart.
- **background swap**: an image's foreground is put on the background of an image of another group (the
  foreground kept, everything else replaced). The common object then appears in unrelated scenes, so the
  scene around it stops being a cue.
- **common background**: the foregrounds of all the images of a group are put on the images of one other group,
  so the group's images share a scene (and that group's object) besides their own object. What a group has in
  common in its background (the rocks of an enclosure, a stadium) is then labelled background: the object the
  group shares is not the only thing it shares.

Runs on the batch's device; randomness from torch's global generator (``torch.manual_seed`` repeats it).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from metric._checks import check_finite_number, check_shape


def donors_of(groups: torch.Tensor) -> torch.Tensor:
    """(B,) group ids → (B,) for each image a random batch position of an image of another group (−1 if none)."""
    if len(groups) == 0:
        return torch.empty(0, dtype=torch.long, device=groups.device)
    other = groups[:, None] != groups[None, :]
    keys = torch.where(other, torch.rand(other.shape, device=groups.device), -1.0)
    choice = keys.argmax(dim=1)
    return torch.where(other.any(dim=1), choice, torch.full_like(choice, -1))


def common_background_donors(groups: torch.Tensor, p: float) -> torch.Tensor:
    """(B,) group ids → (B,) donor positions: each group, with probability ``p``, takes one other group at random,
    and its k-th image (in batch order) the donor group's (k mod n)-th image; −1 for images of groups not drawn
    (and all of them when the batch holds one group)."""
    ids, inverse = torch.unique(groups, return_inverse=True)
    count = len(ids)
    keys = torch.rand(count, count, device=groups.device).fill_diagonal_(-1.0)
    drawn = torch.rand(count, device=groups.device) < p
    if count < 2 or not bool(drawn.any()):
        return torch.full_like(inverse, -1)
    donor_group = keys.argmax(dim=1)[inverse]
    order = torch.argsort(inverse, stable=True)  # batch positions, group by group
    sizes = torch.bincount(inverse, minlength=count)
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.empty_like(inverse)
    rank[order] = torch.arange(len(groups), device=groups.device) - starts[inverse[order]]
    donors = order[starts[donor_group] + rank % sizes[donor_group]]
    return torch.where(drawn[inverse], donors, torch.full_like(donors, -1))


def shrink_and_place(images: torch.Tensor, masks: torch.Tensor, factor: torch.Tensor, target: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each (image, mask) pair scaled by ``factor (B,)`` about its foreground's centre, which moves to ``target
    (B, 2)`` (x, y in [-1, 1] image coordinates); areas from outside are empty (image and mask 0)."""
    b, _, h, w = images.shape
    device = images.device
    ys = torch.linspace(-1, 1, h, device=device).view(1, h, 1)
    xs = torch.linspace(-1, 1, w, device=device).view(1, 1, w)
    weight = masks[:, 0]
    area = weight.sum(dim=(1, 2)).clamp(min=1)
    centre_y, centre_x = (weight * ys).sum(dim=(1, 2)) / area, (weight * xs).sum(dim=(1, 2)) / area
    target_x, target_y = target[:, 0], target[:, 1]
    # output point t samples the source at centre + (t − target) / factor
    theta = torch.zeros(b, 2, 3, device=device, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / factor
    theta[:, 0, 2] = centre_x - target_x / factor
    theta[:, 1, 2] = centre_y - target_y / factor
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    moved_masks = F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return moved, moved_masks


class GroupPaste(nn.Module):
    """``forward(images (B, 3, S, S) in [0, 1], masks (B, 1, S, S) in {0, 1}, groups (B,))`` → images, masks; masks
    holding other values (0/255) are a ``ValueError``.

    Each group, with probability ``common_background_p``: its images' foregrounds are put on the images of one other
    group (:func:`common_background_donors`). Then each image independently: with probability ``background_p`` its
    foreground is put on another group's image instead of its own background; with probability ``distractor_p`` an
    object of another group's image is pasted in (scaled by a factor in ``distractor_scale``, labelled background).
    Pasted edges are feathered over ``feather`` >= 0 pixels so a hard cut-out edge is no cue (not at the frame: a
    foreground touching it stays intact). Masks come back in their input dtype. A batch of one group (or of no
    image) is returned unchanged."""

    def __init__(self, distractor_p: float = 0.5, background_p: float = 0.0,
                 distractor_scale: tuple[float, float] = (0.3, 0.7), feather: float = 1.5,
                 common_background_p: float = 0.0) -> None:
        super().__init__()
        for name, p in (("distractor_p", distractor_p), ("background_p", background_p),
                        ("common_background_p", common_background_p)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        if len(distractor_scale) != 2 or not 0 < distractor_scale[0] <= distractor_scale[1] < math.inf:
            raise ValueError(f"distractor_scale must be (low, high) with 0 < low <= high < inf, got {distractor_scale}")
        check_finite_number(feather, "feather (pixels)")
        if feather < 0:
            raise ValueError(f"feather (pixels) must be >= 0 (0: hard edges), got {feather}")
        self.distractor_p = distractor_p
        self.background_p = background_p
        self.common_background_p = common_background_p
        self.distractor_scale = distractor_scale
        self.feather = feather

    def _soft(self, masks: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) 0/1 → Gaussian-blurred over ``feather`` pixels; the image's border is replicated, so a
        region running out of the frame keeps its full weight up to the frame."""
        if self.feather <= 0:
            return masks
        radius = max(1, math.ceil(2 * self.feather))
        x = torch.arange(-radius, radius + 1, device=masks.device, dtype=masks.dtype)
        kernel = torch.exp(-0.5 * (x / self.feather) ** 2)
        kernel = kernel / kernel.sum()
        soft = F.conv2d(F.pad(masks, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
        return F.conv2d(F.pad(soft, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))

    def _put_on(self, images: torch.Tensor, masks: torch.Tensor, donor: torch.Tensor, which: torch.Tensor
                ) -> torch.Tensor:
        """Images where ``which`` (B,) is set: their (feathered) foreground on the image at batch position ``donor``."""
        if not bool(which.any()):
            return images
        keep = self._soft(masks)
        swapped = keep * images + (1 - keep) * images[donor]
        return torch.where(which.view(-1, 1, 1, 1), swapped, images)

    def forward(self, images: torch.Tensor, masks: torch.Tensor, groups: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        sizes = check_shape(images, ["B", "3", "H", "W"], "images")
        check_shape(masks, [str(sizes["B"]), "1", str(sizes["H"]), str(sizes["W"])], "masks")
        check_shape(groups, [str(sizes["B"])], "groups")
        if bool(((masks != 0) & (masks != 1)).any()):  # 0/255 would weigh the images by 255
            found = torch.unique(masks.float())
            values = ", ".join(f"{v:g}" for v in found[:5].tolist()) + (", …" if len(found) > 5 else "")
            raise ValueError(f"masks must hold 0 (background) and 1 (foreground) only, found {values}")
        mask_dtype, masks = masks.dtype, masks.to(images.dtype)
        if self.common_background_p:
            common = common_background_donors(groups, self.common_background_p)
            images = self._put_on(images, masks, common.clamp(min=0), common >= 0)
        donors = donors_of(groups)
        has_donor = donors >= 0
        if not bool(has_donor.any()):
            return images, masks.to(mask_dtype)
        donor = donors.clamp(min=0)
        b = sizes["B"]
        swap = has_donor & (torch.rand(b, device=images.device) < self.background_p)
        images = self._put_on(images, masks, donor, swap)
        paste = has_donor & (torch.rand(b, device=images.device) < self.distractor_p)
        if bool(paste.any()):
            factor = torch.empty(b, device=images.device).uniform_(*self.distractor_scale)
            target = torch.rand(b, 2, device=images.device) * 1.4 - 0.7  # the object's centre stays inside
            moved, moved_masks = shrink_and_place(images[donor], masks[donor], factor, target)
            alpha = self._soft((moved_masks > 0.5).to(images.dtype)) * paste.view(b, 1, 1, 1).to(images.dtype)
            images = alpha * moved + (1 - alpha) * images
            masks = masks * (alpha <= 0.5).to(masks.dtype)
        return images.clamp(0.0, 1.0), masks.to(mask_dtype)
