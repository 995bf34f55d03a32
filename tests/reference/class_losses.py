"""Naive references for the class-level losses (plain Python loops over tiny inputs)."""
from __future__ import annotations

import math

import torch


def mean_triplet_loss_all(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> float:
    """Mean of [‖a−p‖² − ‖a−n‖² + margin]₊ over every valid triplet (0 if there is none), in float64."""
    x = embeddings.double().tolist()
    y = labels.tolist()

    def sq(u, v):
        return sum((ui - vi) ** 2 for ui, vi in zip(u, v))

    total, count = 0.0, 0
    for a in range(len(y)):
        for p in range(len(y)):
            if p == a or y[p] != y[a]:
                continue
            for n in range(len(y)):
                if y[n] == y[a]:
                    continue
                total += max(0.0, sq(x[a], x[p]) - sq(x[a], x[n]) + margin)
                count += 1
    return total / count if count else 0.0


def soft_triple_loss(embeddings, labels, centers, num_classes, centers_per_class, la, gamma, margin, tau):
    """Per-sample SoftTriple losses (list) and the τ-weighted centre regulariser (float), by loops."""
    def normalise(v):
        norm = math.sqrt(sum(t * t for t in v))
        return [t / norm for t in v]

    x = [normalise(row) for row in embeddings.double().tolist()]
    w = [normalise(col) for col in centers.double().t().tolist()]  # column c·K + k is centre k of class c
    losses = []
    for xi, yi in zip(x, labels.tolist()):
        logits = []
        for c in range(num_classes):
            sims = [sum(a * b for a, b in zip(xi, w[c * centers_per_class + k])) for k in range(centers_per_class)]
            weights = [math.exp(s / gamma) for s in sims]
            s_ic = sum(wk * s for wk, s in zip(weights, sims)) / sum(weights)
            logits.append(la * (s_ic - margin) if c == yi else la * s_ic)
        losses.append(-logits[yi] + math.log(sum(math.exp(v) for v in logits)))
    reg = 0.0
    if centers_per_class > 1:
        for c in range(num_classes):
            for s in range(centers_per_class):
                for t in range(s + 1, centers_per_class):
                    ws, wt = w[c * centers_per_class + s], w[c * centers_per_class + t]
                    reg += math.sqrt(2.0 + 1e-5 - 2.0 * sum(a * b for a, b in zip(ws, wt)))
        reg /= num_classes * centers_per_class * (centers_per_class - 1)
    return losses, tau * reg


def global_loss(d_pos: list[float], d_neg: list[float], margin: float, lam: float) -> float:
    """(σ²₊ + σ²₋) + λ·max(0, μ₊ − μ₋ + t), population variances, by loops."""
    def mean(v):
        return sum(v) / len(v)

    def var(v):
        m = mean(v)
        return sum((t - m) ** 2 for t in v) / len(v)

    return var(d_pos) + var(d_neg) + lam * max(0.0, mean(d_pos) - mean(d_neg) + margin)
