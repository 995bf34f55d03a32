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


def class_tree_levels(centres: torch.Tensor, thresholds: list[float]) -> list[set[frozenset[int]]]:
    """Partitions of the classes per level (level 0 first): at each threshold, repeatedly join the two nearest
    clusters (mean Euclidean distance between their classes' centres) while that distance is <= the threshold."""
    c = centres.shape[0]
    x = centres.double().tolist()
    dist = [[math.dist(x[i], x[j]) for j in range(c)] for i in range(c)]
    clusters = [[i] for i in range(c)]
    levels = [{frozenset(k) for k in clusters}]
    for threshold in thresholds:
        while True:
            best = None
            for i in range(len(clusters)):
                for j in range(i + 1, len(clusters)):
                    pairs = [dist[a][b] for a in clusters[i] for b in clusters[j]]
                    d = sum(pairs) / len(pairs)
                    if d <= threshold and (best is None or d < best[0]):
                        best = (d, i, j)
            if best is None:
                break
            _, i, j = best
            clusters[i] = clusters[i] + clusters[j]
            del clusters[j]
        levels.append({frozenset(k) for k in clusters})
    return levels


def hierarchical_triplet_losses(embeddings, labels, triplets, merge_distances, spreads, beta) -> list[float]:
    """[d(a,p) − d(a,n) + β + d_H(y_a, y_n) − s_{y_a}]₊ per triplet, Euclidean d, by loops."""
    x, y = embeddings.double().tolist(), labels.tolist()
    losses = []
    for a, p, n in zip(*(t.tolist() for t in triplets)):
        margin = beta + merge_distances[y[a]][y[n]] - spreads[y[a]]
        losses.append(max(0.0, math.dist(x[a], x[p]) - math.dist(x[a], x[n]) + margin))
    return losses
