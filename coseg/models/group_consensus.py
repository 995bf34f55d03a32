"""Group consensus: the images of a group inform each other's features before decoding.

For every pixel of an image, how well it is matched in the *other* images of its group (co-attention), and how
similar it is to the group's common-part prototype, are added to the encoder features. Both are symmetric
functions of the other images (a mean of best matches, a weighted mean), so an image's output does not depend on
the order of the others, and a group of one image gets no group signal (its maps are zero)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from metric._checks import check_shape


def group_index(groups: torch.Tensor) -> list[torch.Tensor]:
    """Batch positions of each group id, in ascending order of id."""
    return [torch.nonzero(groups == g).flatten() for g in torch.unique(groups, sorted=True)]


def best_matches(a: torch.Tensor, b: torch.Tensor, budget: int = 1 << 24) -> torch.Tensor:
    """``a`` (n, K, P), ``b`` (m, K, Q) unit vectors → (n, P, m): each pixel of each image of ``a``, its best cosine
    match among the pixels of each image of ``b``. Computed over chunks of ``a``'s images, or of one image's pixels
    where its similarities alone are more (large images: at 1024 px, 4096 pixels at 1/16 against 128 references
    are 8.6 GB), so no more than ``budget`` similarities, or those of one pixel, are held at once."""
    n, k, p = a.shape
    m, _, q = b.shape
    # b laid out (K, m·Q) once: an einsum per chunk would copy it again each time, and on a large group those
    # copies pile up in the heap (peak memory grew by the copy's size with every chunk)
    columns = b.permute(1, 0, 2).reshape(k, m * q)
    if p * m * q > budget:
        rows = max(1, budget // max(1, m * q))
        return torch.stack([torch.cat([(image[:, j:j + rows].T @ columns).view(-1, m, q).amax(dim=2)
                                       for j in range(0, p, rows)]) for image in a])
    step = budget // max(1, p * m * q)
    return torch.cat([(a[i:i + step].transpose(1, 2) @ columns).view(-1, p, m, q).amax(dim=3)
                      for i in range(0, n, step)])


def group_prototypes(keys: torch.Tensor, sharpness: float = 10.0) -> torch.Tensor:
    """(m, K, Q) unit keys of a group's m images → (m, K): per image, the mean of its vectors weighted by how well
    each is matched in the other images (softmax over pixels), i.e. its part in common with the group."""
    m = keys.shape[0]
    best = best_matches(keys, keys)  # (m, Q, m)
    others = (~torch.eye(m, dtype=torch.bool, device=keys.device)).to(keys.dtype)
    commonness = (best * others[:, None, :]).sum(dim=2) / max(m - 1, 1)
    weights = torch.softmax(commonness * sharpness, dim=1)
    return F.normalize(torch.einsum("jkq,jq->jk", keys, weights), dim=1)


def consensus_maps(keys: torch.Tensor, group_keys: torch.Tensor, prototypes: torch.Tensor,
                   self_mask: torch.Tensor) -> torch.Tensor:
    """``keys`` (n, K, P) of n images of a group; ``group_keys`` (m, K, Q) and ``prototypes`` (m, K) of all m images
    of the group; ``self_mask`` (n, m) True where image i of ``keys`` is image j of the group. Returns (n, 2, P):
    channel 0, the mean over the *other* images of each pixel's best cosine match in that image; channel 1, the
    cosine to the mean of the other images' prototypes. Both are 0 for an image with no other image."""
    valid = (~self_mask).to(keys.dtype)  # (n, m)
    count = valid.sum(dim=1)
    common = (best_matches(keys, group_keys) * valid[:, None, :]).sum(dim=2) / count.clamp(min=1)[:, None]
    proto = F.normalize((valid @ prototypes) / count.clamp(min=1)[:, None], dim=1)  # (n, K)
    proto_sim = torch.einsum("ikp,ik->ip", keys, proto)
    return torch.stack([common, proto_sim], dim=1) * (count > 0).to(keys.dtype)[:, None, None]


class GroupConsensus(nn.Module):
    """(B, C, h, w) features and (B,) group ids → (B, C, h, w): features + a learned function of the consensus maps,
    ``extra_channels`` further maps given by the caller (e.g. a semantic prior) and the features. The fusion starts
    at zero, so a pretrained decoder sees its usual features at first."""

    def __init__(self, channels: int, key_channels: int = 64, extra_channels: int = 0) -> None:
        super().__init__()
        self.extra_channels = extra_channels
        self.key = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels + 2 + extra_channels, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size=1),
        )
        nn.init.zeros_(self.fuse[-1].weight)
        nn.init.zeros_(self.fuse[-1].bias)

    def keys(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → (B, K, h·w) unit key vectors."""
        return F.normalize(self.key(features).flatten(2), dim=1)

    def fuse_maps(self, features: torch.Tensor, maps: torch.Tensor, extra: Optional[torch.Tensor] = None
                  ) -> torch.Tensor:
        """features (B, C, h, w) + consensus maps (B, 2, h·w) (+ ``extra`` (B, E, h, w)) → updated features."""
        inputs = [features, maps.view(maps.shape[0], 2, *features.shape[-2:]).to(features.dtype)]
        if self.extra_channels:
            if extra is None or tuple(extra.shape[1:]) != (self.extra_channels, *features.shape[-2:]):
                got = None if extra is None else tuple(extra.shape)
                raise ValueError(f"this consensus module fuses {self.extra_channels} extra map(s) of the features' "
                                 f"size {tuple(features.shape[-2:])}, got {got}")
            inputs.append(extra.to(features.dtype))
        return features + self.fuse(torch.cat(inputs, dim=1))

    def forward(self, features: torch.Tensor, groups: torch.Tensor, extra: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        check_shape(features, ["B", "C", "h", "w"], "features")
        check_shape(groups, [str(features.shape[0])], "groups")
        keys = self.keys(features).float()
        maps = keys.new_zeros(features.shape[0], 2, keys.shape[-1])
        for members in group_index(groups):
            k = keys[members]
            eye = torch.eye(len(members), dtype=torch.bool, device=k.device)
            maps[members] = consensus_maps(k, k, group_prototypes(k), eye)
        return self.fuse_maps(features, maps, extra)
