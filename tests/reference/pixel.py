"""Naive references for pixel sampling and the IS-Triplet loss: plain loops over tiny inputs."""
from __future__ import annotations

import torch

from tests.reference import triplet as ref


def boundary(labels: torch.Tensor, width: int, ignore_index: int) -> torch.Tensor:
    """(B, H, W) bool: valid pixels with a valid pixel of another class within Chebyshev distance ``width``."""
    b, h, w = labels.shape
    lab = labels.tolist()
    out = torch.zeros(b, h, w, dtype=torch.bool)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                if lab[i][y][x] == ignore_index:
                    continue
                for yy in range(max(0, y - width), min(h, y + width + 1)):
                    for xx in range(max(0, x - width), min(w, x + width + 1)):
                        other = lab[i][yy][xx]
                        if other != ignore_index and other != lab[i][y][x]:
                            out[i, y, x] = True
    return out


def gather(embeddings: torch.Tensor, index: list[int]) -> list[list[float]]:
    """Rows of the pixels with flat indices ``index`` into (B·H·W), read one coordinate at a time."""
    b, d, h, w = embeddings.shape
    rows = []
    for flat in index:
        image, rest = divmod(flat, h * w)
        y, x = divmod(rest, w)
        rows.append([float(embeddings[image, k, y, x]) for k in range(d)])
    return rows


def hardest_triplets(
    rows: list[list[float]], labels: list[int], pools: list[int], kind: str
) -> list[tuple[int, int, int]]:
    """Per anchor: farthest same-label sample and closest other-label sample of its pool (image or group)."""
    sign = -1.0 if kind in ref.SIMILARITIES else 1.0  # larger sign·d = farther
    out = []
    for a in range(len(rows)):
        same_pool = [j for j in range(len(rows)) if pools[j] == pools[a]]
        pos = [p for p in same_pool if p != a and labels[p] == labels[a]]
        neg = [n for n in same_pool if labels[n] != labels[a]]
        if pos and neg:
            p = max(pos, key=lambda j: sign * ref.distance(rows[a], rows[j], kind))
            n = min(neg, key=lambda j: sign * ref.distance(rows[a], rows[j], kind))
            out.append((a, p, n))
    return out


def is_triplet_losses(
    embeddings: torch.Tensor,
    index: list[int],
    labels: list[int],
    images: list[int],
    groups: list[int] | None,
    margin: float,
    kind: str,
) -> torch.Tensor:
    """IS-Triplet per-triplet losses over the given sampled pixels (hardest positive/negative per anchor)."""
    rows = gather(embeddings, index)
    pools = images if groups is None else [groups[i] for i in images]
    triplets = hardest_triplets(rows, labels, pools, kind)
    return ref.triplet_losses(torch.tensor(rows, dtype=torch.float64), triplets, margin, kind)
