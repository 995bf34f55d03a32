"""Co-segmentation scores: per image P (pixel accuracy) and J (foreground IoU), averaged per group, then over
groups. Images whose ground truth is empty have no defined J: ``empty="exclude"`` leaves them out of
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


def _as_mask(mask: np.ndarray, what: str, name: str) -> np.ndarray:
    """``mask`` (H, W) as bool: non-zero is foreground; a float mask must hold only 0 and 1 (not probabilities)."""
    where = f"{name}: " if name else ""
    if mask.ndim != 2 or not mask.size:
        raise ValueError(f"{where}{what} must be an (H, W) mask of at least one pixel, got shape {mask.shape}")
    if mask.dtype.kind == "f" and not ((mask == 0) | (mask == 1)).all():
        raise ValueError(f"{where}{what} must be a 0/1 mask, got float values other than 0 and 1 (probabilities? "
                         f"threshold them: prob >= 0.5)")
    return mask.astype(bool, copy=False)


def score_image(pred: np.ndarray, gt: np.ndarray, group: str = "", name: str = "") -> ImageScore:
    """``pred``, ``gt``: boolean (H, W) masks of the same size (the ground truth's original resolution); integer
    masks count non-zero as foreground, float ones must hold only 0 and 1 (CPU tensors are read as arrays)."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"{name or 'prediction'}: prediction size {pred.shape} differs from ground truth {gt.shape}")
    pred = _as_mask(pred, "prediction", name)
    gt = _as_mask(gt, "ground truth", name)
    p = float((pred == gt).mean())
    union = int(np.logical_or(pred, gt).sum())
    empty = not gt.any()
    j = math.nan if empty else float(np.logical_and(pred, gt).sum()) / union
    return ImageScore(group=group, name=name, P=p, J=j, empty_gt=empty)


def _mean(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def check_empty_policy(empty: str) -> None:
    """Raise ``ValueError`` unless ``empty`` is one of ``EMPTY_POLICIES``."""
    if empty not in EMPTY_POLICIES:
        raise ValueError(f"empty must be one of {', '.join(EMPTY_POLICIES)}, got '{empty}'")


def image_j(score: ImageScore, empty: EmptyPolicy) -> float:
    """The image's J under the ``empty`` policy: its ``J``, or for an empty ground truth 0 ("zero") or NaN
    ("exclude")."""
    check_empty_policy(empty)
    if score.empty_gt:
        return 0.0 if empty == "zero" else math.nan
    return score.J


def summarize(scores: Sequence[ImageScore], empty: EmptyPolicy = "exclude") -> dict:
    """``{"P", "J", "per_group": {group: {"P", "J", "images"}}, "images", "empty_gt_images", "empty"}`` in
    percent; a group whose images all have empty ground truth gets J = NaN under "exclude" and is left out of
    the mean J."""
    check_empty_policy(empty)
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
