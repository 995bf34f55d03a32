"""A hierarchical class tree (Ge et al., ECCV 2018, hierarchical triplet loss): classes are merged level by
level, nearest clusters first, under growing distance thresholds.

Level 0 holds one node per class; level l joins every two clusters whose distance is at most the threshold
d_l, nearest pair first, until no pair is that close. The distance between clusters is the average of the
distances between their classes' centres (average linkage, UPGMA): a merge never makes clusters closer, so
level l is exactly the average-linkage dendrogram cut at d_l. The tree distance d_H(a, b) of two classes is
the threshold of the first level where they share a node (0 for a class and itself).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from metric._checks import (check_embedding_size, check_finite, check_finite_number, check_floating, check_same_size,
                            check_shape, is_integer)
from metric.distances.base_distance import BaseDistance, at_least_float32, computing_dtype
from metric.distances.euclidean import EuclideanDistance
from metric.samplers.sharding import class_indices


def check_num_levels(num_levels: int) -> None:
    """Raise ``ValueError`` unless a class tree of ``num_levels`` levels can be built (at least one)."""
    if not is_integer(num_levels):
        raise ValueError(f"num_levels must be a whole number of levels, got {num_levels}")
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")


def check_tree_distance(distance: BaseDistance) -> None:
    """Raise ``ValueError`` for a similarity: tree merging and hierarchical margins need distances."""
    if distance.is_inverted:
        raise ValueError(
            f"{type(distance).__name__} is a similarity; the class tree merges by distance and the hierarchical "
            "margin adds distances: use a distance (e.g. Euclidean or SNR)"
        )


@torch.no_grad()
def class_statistics(
    embeddings: torch.Tensor, labels: torch.Tensor, distance: Optional[BaseDistance] = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per class of a data set's embeddings (N, D): its label, its centre (mean embedding) and its mean
    intra-class distance s_c (mean of d(x_i, x_j) over pairs i ≠ j of the class, 0 for a one-sample class).

    Returns ``classes (C,)`` (sorted distinct labels), ``centres (C, D)`` and ``spreads (C,)``, in embedding
    units of ``distance`` (default Euclidean) and in float32 at least (rounded to 16 bits, they would shift the
    hierarchical margins). Cost O(Σ_c n_c²·D), chunked by the distance.
    """
    # The labels may be on another device than the embeddings (they are grouped on the CPU).
    n = check_shape(embeddings, ["N", "D"], "embeddings")["N"]
    check_same_size(n, check_shape(labels, ["N"], "labels")["N"], "embeddings and labels")
    if n == 0:
        raise ValueError("embeddings is empty: class statistics need at least one sample")
    check_embedding_size(embeddings)
    check_floating(embeddings, "embeddings")
    check_finite(embeddings, "embeddings")
    embeddings = at_least_float32(embeddings)
    distance = EuclideanDistance() if distance is None else distance
    check_tree_distance(distance)
    classes, members = class_indices(labels)
    centres = torch.empty(len(classes), embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    spreads = torch.zeros(len(classes), dtype=embeddings.dtype, device=embeddings.device)
    for c, indices in enumerate(members):
        x = embeddings[indices.to(embeddings.device)]
        centres[c] = x.mean(0)
        if len(indices) > 1:
            # d(x, x) is 0 up to round-off: leave the diagonal out exactly.
            total = sum(block.sum() - block.diagonal(rows.start).sum() for rows, block in distance.iter_pairwise(x))
            spreads[c] = total / (len(indices) * (len(indices) - 1))
    return classes.to(embeddings.device), centres, spreads


def average_linkage(distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-linkage (UPGMA) dendrogram of a symmetric (C, C) distance matrix, by the nearest-neighbour
    chain (O(C²) time and memory).

    Returns ``pairs (C − 1, 2)``, one member of each of the two clusters joined, and ``heights (C − 1,)`` the
    cluster distance at the merge, both in ascending height order.
    """
    c = check_shape(distances, ["C", "C"], "distances")["C"]
    d = distances.detach().to(device="cpu", dtype=torch.float64).clone()
    d.fill_diagonal_(float("inf"))
    size = torch.ones(c, dtype=torch.float64)
    alive = torch.ones(c, dtype=torch.bool)
    pairs, heights, chain = [], [], []
    while len(pairs) < c - 1:
        if not chain:
            chain.append(int(alive.nonzero()[0]))
        a = chain[-1]
        b = int(torch.argmin(d[a]))
        # Prefer the previous link on ties, so the chain cannot cycle.
        if len(chain) > 1 and d[a, chain[-2]] <= d[a, b]:
            b = chain[-2]
        if len(chain) == 1 or b != chain[-2]:
            chain.append(b)
            continue
        chain.pop()
        chain.pop()
        pairs.append((a, b))
        heights.append(float(d[a, b]))
        merged = (size[a] * d[a] + size[b] * d[b]) / (size[a] + size[b])  # the joined cluster lives at a
        d[a], d[:, a] = merged, merged
        d[b], d[:, b] = float("inf"), float("inf")
        d[a, a] = float("inf")
        size[a] += size[b]
        alive[b] = False
    heights_t = torch.tensor(heights, dtype=torch.float64)
    order = torch.argsort(heights_t, stable=True)
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)[order], heights_t[order]


def _cut(num_classes: int, pairs: torch.Tensor, heights: torch.Tensor, thresholds: list[float]) -> torch.Tensor:
    """(len(thresholds), C) cluster ids (0, 1, ... per level) after applying the merges of height ≤ each
    threshold (ascending)."""
    parent = list(range(num_classes))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    levels, applied = [], 0
    for threshold in thresholds:
        while applied < len(heights) and heights[applied] <= threshold:
            a, b = pairs[applied].tolist()
            parent[root(a)] = root(b)
            applied += 1
        roots = torch.tensor([root(i) for i in range(num_classes)])
        levels.append(torch.unique(roots, return_inverse=True)[1])
    return torch.stack(levels)


class ClassTree:
    """Levels of class clusters: ``assignments (L + 1, C)`` cluster id of each class per level (row 0: every
    class alone; last row: one root) and ``thresholds (L + 1,)`` their merge distances (0 first, ascending).

    Classes are named by their labels ``classes (C,)`` (sorted); methods take and return labels. Build one with
    :meth:`build` (from class centres) or :meth:`from_embeddings`.
    """

    def __init__(
        self,
        classes: torch.Tensor,
        centres: torch.Tensor,
        assignments: torch.Tensor,
        thresholds: torch.Tensor,
        distance: BaseDistance,
    ) -> None:
        self.classes = classes
        self.centres = centres
        self.assignments = assignments
        self.thresholds = thresholds
        self.distance = distance

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        centres: torch.Tensor,
        num_levels: Optional[int] = None,
        thresholds: Optional[Sequence[float]] = None,
        classes: Optional[torch.Tensor] = None,
        distance: Optional[BaseDistance] = None,
        start: float = 0.0,
    ) -> "ClassTree":
        """Tree of the classes whose centres are ``centres (C, D)`` (labels ``classes``, default 0..C−1).

        Give either ``thresholds`` (finite, ascending, > 0) or ``num_levels`` L: then d_l = start + (h − start)·l/L,
        l = 1..L, with h the distance at which the last two clusters join and ``start`` ≥ 0 (the paper starts at
        the mean intra-class distance). Classes that no level joins meet at a root level added at
        max(last threshold, h). Centre distances use ``distance`` (default Euclidean), symmetrised.
        """
        c = check_shape(centres, ["C", "D"], "centres")["C"]
        check_finite(centres, "centres")
        if c == 0:
            raise ValueError("centres is empty: a class tree needs at least one class")
        classes = torch.arange(c, device=centres.device) if classes is None else classes
        check_same_size(c, check_shape(classes, ["C"], "classes")["C"], "centres and classes")
        if classes.is_floating_point() or (c > 1 and not bool((classes[1:] > classes[:-1]).all())):
            raise ValueError("classes must be integer labels in strictly ascending order")
        distance = EuclideanDistance() if distance is None else distance
        check_tree_distance(distance)
        if (num_levels is None) == (thresholds is None):
            raise ValueError("give exactly one of num_levels and thresholds")
        pairwise = distance.pairwise(centres)
        pairs, heights = average_linkage((pairwise + pairwise.T) / 2)
        top = float(heights[-1]) if len(heights) else 0.0
        if thresholds is None:
            check_num_levels(num_levels)
            check_finite_number(start, "start")
            if start < 0:
                raise ValueError(f"start must be a distance >= 0, got {start}")
            start = min(start, top)
            levels = [start + (top - start) * l / num_levels for l in range(1, num_levels)] + [top]
        else:
            levels = [float(t) for t in thresholds]
            if (not levels or not all(map(math.isfinite, levels)) or levels[0] <= 0
                    or any(b <= a for a, b in zip(levels, levels[1:]))):
                raise ValueError(f"thresholds must be finite, positive and strictly ascending, got {levels}")
        assignments = torch.cat([torch.arange(c).unsqueeze(0), _cut(c, pairs, heights, levels)])
        levels = [0.0] + levels
        if bool((assignments[-1] != 0).any()):
            assignments = torch.cat([assignments, torch.zeros(1, c, dtype=torch.long)])
            levels.append(max(levels[-1], top))
        thresholds_t = torch.tensor(levels, dtype=computing_dtype(centres.dtype), device=centres.device)  # not 16 bits
        return cls(classes, centres.detach(), assignments.to(centres.device), thresholds_t, distance)

    @classmethod
    def from_embeddings(
        cls, embeddings: torch.Tensor, labels: torch.Tensor, num_levels: int, distance: Optional[BaseDistance] = None
    ) -> tuple["ClassTree", torch.Tensor]:
        """Tree of a data set's classes (N, D) with ``num_levels`` levels starting at the mean intra-class
        distance s_0 (as the paper), and the classes' mean intra-class distances ``spreads (C,)``."""
        classes, centres, spreads = class_statistics(embeddings, labels, distance)
        start = float(spreads.mean())
        tree = cls.build(centres, num_levels=num_levels, classes=classes, distance=distance, start=start)
        return tree, spreads

    @property
    def num_classes(self) -> int:
        return int(self.classes.shape[0])

    @property
    def num_levels(self) -> int:
        """Number of levels above the leaves (the root's level)."""
        return int(self.assignments.shape[0]) - 1

    def index_of(self, labels: torch.Tensor) -> torch.Tensor:
        """Row of each class label in :attr:`classes`; ``ValueError`` for a label the tree does not hold."""
        labels = torch.as_tensor(labels, device=self.classes.device)
        index = torch.searchsorted(self.classes, labels).clamp(max=self.num_classes - 1)
        unknown = self.classes[index] != labels
        if bool(unknown.any()):
            raise ValueError(f"class {int(labels[unknown].flatten()[0])} is not in the class tree")
        return index

    def merge_distances(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """d_H of each pair of class labels ``a``, ``b`` (shapes that broadcast, e.g. one label and many): the
        threshold of the first level where they share a node."""
        ia, ib = torch.broadcast_tensors(self.index_of(a), self.index_of(b))
        together = self.assignments[:, ia.flatten()] == self.assignments[:, ib.flatten()]  # the root row is all True
        first = together.to(torch.uint8).argmax(0)
        return self.thresholds[first].reshape(ia.shape)

    def merge_distance(self, a: int, b: int) -> float:
        """d_H(a, b) of two class labels."""
        return float(self.merge_distances(torch.tensor(a), torch.tensor(b)))

    def merge_matrix(self, classes: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(k, k) d_H between the given class labels (default all C classes, in :attr:`classes` order)."""
        classes = self.classes if classes is None else torch.as_tensor(classes, device=self.classes.device)
        k = classes.shape[0]
        return self.merge_distances(classes.repeat_interleave(k), classes.repeat(k)).reshape(k, k)

    def nearest_classes(self, c: int, n: int) -> torch.Tensor:
        """The ``n`` class labels nearest to class ``c`` in the tree: by d_H, ties by centre distance."""
        if not is_integer(n) or not 0 <= n < self.num_classes:
            raise ValueError(f"n must be in [0, {self.num_classes - 1}] (the other classes), got {n}")
        i = int(self.index_of(torch.tensor(c)))
        to_centres = self.distance.pairwise(self.centres[i : i + 1], self.centres)[0]
        by_centre = torch.argsort(to_centres, stable=True)
        tree = self.merge_distances(torch.full_like(self.classes, int(c)), self.classes)
        order = by_centre[torch.argsort(tree[by_centre], stable=True)]
        return self.classes[order[order != i][:n]]
