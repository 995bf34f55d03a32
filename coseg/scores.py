"""Co-segmentation scores: per image P (pixel accuracy) and J (foreground IoU), averaged per group, then over
groups (GUIDE §4). Images whose ground truth is empty have no defined J: ``empty="exclude"`` leaves them out of
J (they still count in P), ``empty="zero"`` counts their J as 0."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np

EmptyPolicy = Literal["exclude", "zero"]
EMPTY_POLICIES = ("exclude", "zero")


@dataclass(frozen=True)
class ImageScore:
    """Scores of one image, as fractions in [0, 1]; ``J`` is NaN when the ground truth is empty."""

    group: str
    name: str
    P: float
    J: float
    empty_gt: bool


def score_image(pred: np.ndarray, gt: np.ndarray, group: str = "", name: str = "") -> ImageScore:
    """``pred``, ``gt``: boolean (H, W) masks of the same size (the ground truth's original resolution)."""
    if pred.shape != gt.shape:
        raise ValueError(f"{name or 'prediction'}: prediction size {pred.shape} differs from ground truth {gt.shape}")
    pred = pred.astype(bool, copy=False)
    gt = gt.astype(bool, copy=False)
    p = float((pred == gt).mean())
    union = int(np.logical_or(pred, gt).sum())
    empty = not gt.any()
    j = math.nan if empty else float(np.logical_and(pred, gt).sum()) / union
    return ImageScore(group=group, name=name, P=p, J=j, empty_gt=empty)


def _mean(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def image_j(score: ImageScore, empty: EmptyPolicy) -> float:
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty must be one of {', '.join(EMPTY_POLICIES)}, got '{empty}'")
    if score.empty_gt:
        return 0.0 if empty == "zero" else math.nan
    return score.J


def summarize(scores: Sequence[ImageScore], empty: EmptyPolicy = "exclude") -> dict:
    """``{"P", "J", "per_group": {group: {"P", "J", "images"}}, "images", "empty_gt_images", "empty"}`` in
    percent; a group whose images all have empty ground truth gets J = NaN under "exclude" and is left out of
    the mean J."""
    groups: dict[str, list[ImageScore]] = {}
    for s in scores:
        groups.setdefault(s.group, []).append(s)
    per_group = {
        g: {"P": 100 * _mean(s.P for s in ss), "J": 100 * _mean(image_j(s, empty) for s in ss), "images": len(ss)}
        for g, ss in groups.items()
    }
    return {
        "P": _mean(v["P"] for v in per_group.values()),
        "J": _mean(v["J"] for v in per_group.values()),
        "per_group": per_group,
        "images": len(scores),
        "empty_gt_images": sum(s.empty_gt for s in scores),
        "empty": empty,
    }
