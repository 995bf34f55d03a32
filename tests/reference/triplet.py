"""Naive references for the distances, triplet miners and triplet margin loss: plain loops over tiny inputs."""
from __future__ import annotations

import math

import torch

SIMILARITIES = {"cosine"}


def distance(x: list[float], y: list[float], kind: str) -> float:
    """d(x, y) between two vectors (x is the anchor for the non-symmetric SNR)."""
    d = len(x)
    if kind in ("euclidean", "squared_euclidean"):
        squared = sum((a - b) ** 2 for a, b in zip(x, y))
        return squared if kind == "squared_euclidean" else math.sqrt(squared)
    if kind == "cosine":
        dot = sum(a * b for a, b in zip(x, y))
        return dot / (math.sqrt(sum(a * a for a in x)) * math.sqrt(sum(b * b for b in y)))
    if kind == "snr":
        noise = [b - a for a, b in zip(x, y)]
        noise_mean, x_mean = sum(noise) / d, sum(x) / d
        return sum((v - noise_mean) ** 2 for v in noise) / sum((v - x_mean) ** 2 for v in x)
    raise ValueError(f"no reference for distance '{kind}'")


def pairwise(x: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    rows, cols = x.tolist(), y.tolist()
    return torch.tensor([[distance(a, b, kind) for b in cols] for a in rows], dtype=torch.float64)


def gap(to_positive: float, to_negative: float, kind: str) -> float:
    """How much a triplet violates: d(a,p) − d(a,n), or s(a,n) − s(a,p) for similarities."""
    return to_negative - to_positive if kind in SIMILARITIES else to_positive - to_negative


def all_triplets(labels: torch.Tensor) -> list[tuple[int, int, int]]:
    lab = labels.tolist()
    n = len(lab)
    out = []
    for a in range(n):
        for p in range(n):
            for q in range(n):
                if p != a and lab[p] == lab[a] and lab[q] != lab[a]:
                    out.append((a, p, q))
    return out


def triplet_gap(emb: torch.Tensor, triplet: tuple[int, int, int], kind: str) -> float:
    a, p, n = (emb[i].tolist() for i in triplet)
    return gap(distance(a, p, kind), distance(a, n, kind), kind)


def batch_all(emb: torch.Tensor, labels: torch.Tensor, kind: str, margin: float | None) -> list[tuple[int, int, int]]:
    triplets = all_triplets(labels)
    if margin is None:
        return triplets
    return [t for t in triplets if triplet_gap(emb, t, kind) + margin > 0]


def semi_hard(emb: torch.Tensor, labels: torch.Tensor, kind: str, margin: float) -> list[tuple[int, int, int]]:
    return [t for t in all_triplets(labels) if -margin < triplet_gap(emb, t, kind) < 0]


def batch_hard(emb: torch.Tensor, labels: torch.Tensor, kind: str) -> list[tuple[int, int, int]]:
    """Per anchor: the farthest positive and the closest negative (by value; ties are not expected)."""
    lab, rows = labels.tolist(), emb.tolist()
    sign = -1.0 if kind in SIMILARITIES else 1.0  # larger sign·d = farther
    out = []
    for a in range(len(lab)):
        pos = [p for p in range(len(lab)) if p != a and lab[p] == lab[a]]
        neg = [n for n in range(len(lab)) if lab[n] != lab[a]]
        if pos and neg:
            p = max(pos, key=lambda j: sign * distance(rows[a], rows[j], kind))
            n = min(neg, key=lambda j: sign * distance(rows[a], rows[j], kind))
            out.append((a, p, n))
    return out


def triplet_losses(
    emb: torch.Tensor,
    triplets: list[tuple[int, int, int]],
    margin: float,
    kind: str,
    labels: torch.Tensor | None = None,
    class_margins: torch.Tensor | None = None,
) -> torch.Tensor:
    out = []
    for t in triplets:
        m = margin if class_margins is None else float(class_margins[int(labels[t[0]]), int(labels[t[2]])])
        out.append(max(0.0, triplet_gap(emb, t, kind) + m))
    return torch.tensor(out, dtype=torch.float64)


def zero_mean(emb: torch.Tensor) -> torch.Tensor:
    return torch.tensor([abs(sum(row)) for row in emb.tolist()], dtype=torch.float64)
