"""Naive references for the retrieval metrics and the smart miner: plain loops over tiny inputs, float64."""
from __future__ import annotations

import math
from collections import Counter
from typing import Optional, Sequence


def score(x: Sequence[float], y: Sequence[float], metric: str) -> float:
    """Squared Euclidean distance ("l2"), cosine similarity or inner product of two vectors."""
    if metric == "l2":
        return sum((a - b) ** 2 for a, b in zip(x, y))
    dot = sum(a * b for a, b in zip(x, y))
    if metric == "ip":
        return dot
    return dot / (math.sqrt(sum(a * a for a in x)) * math.sqrt(sum(b * b for b in y)))


def ranking(queries: list, references: list, metric: str, exclude_self: bool) -> list[list[tuple[float, int]]]:
    """Per query, every (score, reference index) best first, ties by index; the query's own row left out."""
    out = []
    for i, q in enumerate(queries):
        pairs = [(score(q, r, metric), j) for j, r in enumerate(references) if not (exclude_self and j == i)]
        pairs.sort(key=lambda p: (p[0], p[1]) if metric == "l2" else (-p[0], p[1]))
        out.append(pairs)
    return out


def knn(queries: list, references: Optional[list], k: int, metric: str = "l2", exclude_self: Optional[bool] = None):
    """(scores, indices): lists of k per query."""
    exclude = references is None if exclude_self is None else exclude_self
    refs = queries if references is None else references
    ranked = ranking(queries, refs, metric, exclude)
    return [[s for s, _ in r[:k]] for r in ranked], [[j for _, j in r[:k]] for r in ranked]


def retrieval(embeddings: list, labels: list, ks: Sequence[int], metric: str = "l2") -> dict[str, float]:
    """R@K and MAP@R by the definitions, lone queries (no other sample of their class) left out."""
    ranked = ranking(embeddings, embeddings, metric, exclude_self=True)
    counts = Counter(labels)
    hits = {k: 0 for k in ks}
    ap_total, queries = 0.0, 0
    for i, order in enumerate(ranked):
        r = counts[labels[i]] - 1
        if r == 0:
            continue
        queries += 1
        same = [labels[j] == labels[i] for _, j in order]
        for k in ks:
            hits[k] += any(same[:k])
        correct, ap = 0, 0.0
        for rank in range(1, r + 1):
            if same[rank - 1]:
                correct += 1
                ap += correct / rank
        ap_total += ap / r
    if queries == 0:
        return {**{f"R@{k}": math.nan for k in ks}, "MAP@R": math.nan}
    return {**{f"R@{k}": hits[k] / queries for k in ks}, "MAP@R": ap_total / queries}


def nmi(labels_true: list, labels_pred: list) -> float:
    """NMI (arithmetic normaliser) from a dense contingency table, with sklearn's conventions."""
    us, vs = sorted(set(labels_true)), sorted(set(labels_pred))
    if len(us) == len(vs) == 1:
        return 1.0
    n = len(labels_true)
    table = [[sum(1 for a, b in zip(labels_true, labels_pred) if a == u and b == v) for v in vs] for u in us]
    rows = [sum(row) for row in table]
    cols = [sum(table[i][j] for i in range(len(us))) for j in range(len(vs))]
    mi = 0.0
    for i in range(len(us)):
        for j in range(len(vs)):
            if table[i][j]:
                mi += table[i][j] / n * math.log(n * table[i][j] / (rows[i] * cols[j]))
    if mi < 2.220446049250313e-16:
        return 0.0
    h_u = -sum(c / n * math.log(c / n) for c in rows)
    h_v = -sum(c / n * math.log(c / n) for c in cols)
    return mi / ((h_u + h_v) / 2)


def smart_mine(
    embeddings: list, labels: list, anchors: list[int], num_neighbours: int, offset: float, drawn: dict[int, int]
) -> dict[int, tuple[Optional[int], Optional[int]]]:
    """Per anchor: (nearest positive, nearest negative farther than that positive + offset) among its
    ``num_neighbours`` nearest others (Euclidean). A positive missing from the list is None and the negative rule
    then uses the fallback positive ``drawn[anchor]``; a negative missing from the list is None."""
    out = {}
    for a in anchors:
        dist = lambda j: math.sqrt(score(embeddings[a], embeddings[j], "l2"))  # noqa: E731
        neighbours = sorted((dist(j), j) for j in range(len(embeddings)) if j != a)[:num_neighbours]
        positive = next((j for d, j in neighbours if labels[j] == labels[a]), None)
        to_positive = dist(drawn[a] if positive is None else positive)
        negative = next((j for d, j in neighbours if labels[j] != labels[a] and d > to_positive + offset), None)
        out[a] = (positive, negative)
    return out
