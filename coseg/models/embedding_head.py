"""Per-pixel embedding head: conv3×3-BN-ReLU-conv1×1 on decoder features at a reduced resolution, L2-normalised
over channels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EmbeddingHead(nn.Module):
    """(B, in_channels, h, w) decoder features → (B, embedding_dim, *size) unit-length pixel embeddings.

    Features larger than ``size`` are average-pooled down to it first (so the head runs at the embedding
    resolution, which keeps the metric head cheap); smaller ones are resized up (bilinear) after the head. The
    raw map is normalised last, so every output pixel has norm 1."""

    def __init__(self, in_channels: int, embedding_dim: int, hidden_channels: int) -> None:
        super().__init__()
        if embedding_dim < 1 or hidden_channels < 1:
            raise ValueError(f"embedding_dim and hidden_channels must be >= 1, "
                             f"got {embedding_dim} and {hidden_channels}")
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, embedding_dim, kernel_size=1),
        )

    def forward(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = features.shape[-2:]
        if h > size[0] or w > size[1]:
            features = F.adaptive_avg_pool2d(features, size)
        embeddings = self.layers(features)
        if embeddings.shape[-2:] != size:
            embeddings = F.interpolate(embeddings, size=size, mode="bilinear", align_corners=False)
        return F.normalize(embeddings, dim=1)
