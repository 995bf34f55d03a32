"""A small deterministic co-segmentation data set written to disk in any supported layout.

Each group has one common object: a group-specific shape (star, ellipse, polygon, cross or ring) with a
group-specific two-colour stripe texture, seen at a different position, size, rotation and brightness in every
image. Backgrounds are smooth random colour fields with noise, cluttered with distractor shapes whose kind, colour
and texture are drawn anew for every image, so only the object is common to a group. The mask is the object.

Each image is drawn from its own random stream, seeded by (seed, group, image), so it does not depend on how many
groups or images are written; but numpy makes the stream of (seed, group, 0) that of (seed, group), which draws the
group's object: image 0 of a group reuses those numbers, and in ellipse, cross and ring groups its background's
first colour cells are the object's two stripe colours. Kept: ``coseg demo``'s data are these very images.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from coseg.atomic import PathLike, write_bytes_atomic
from coseg.data.layouts import SBCOSEG_SUBSETS
from metric._checks import check_count, whole_number

SHAPES = ("star", "ellipse", "polygon", "cross", "ring")
SYNTHETIC_LAYOUTS = ("icoseg", "internet", "sbcoseg", "folders")


def _outline(kind: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Polygons in unit coordinates (radius ≈ 1): the outline, then holes (drawn as background)."""
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    if kind == "star":
        points = rng.integers(5, 9)
        t = np.linspace(0, 2 * math.pi, 2 * points, endpoint=False)
        r = np.where(np.arange(2 * points) % 2 == 0, 1.0, rng.uniform(0.35, 0.55))
        return [np.stack([r * np.cos(t), r * np.sin(t)], 1)]
    if kind == "ellipse":
        return [np.stack([np.cos(t), rng.uniform(0.45, 0.7) * np.sin(t)], 1)]
    if kind == "polygon":
        t = np.sort(rng.uniform(0, 2 * math.pi, rng.integers(5, 8)))
        r = rng.uniform(0.6, 1.0, len(t))
        return [np.stack([r * np.cos(t), r * np.sin(t)], 1)]
    if kind == "cross":
        w = rng.uniform(0.25, 0.4)
        return [np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1], [-w, 1], [-w, w], [-1, w],
                          [-1, -w], [-w, -w]], float)]
    inner = rng.uniform(0.4, 0.6)
    return [np.stack([np.cos(t), np.sin(t)], 1), inner * np.stack([np.cos(t), np.sin(t)], 1)]


def _stripes(size: int, colours: np.ndarray, angle: float, period: float, phase: float) -> np.ndarray:
    """(size, size, 3) float image of stripes alternating between the two ``colours``."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    wave = np.sin((x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period + phase) > 0
    return np.where(wave[..., None], colours[0], colours[1]).astype(np.float32)


def _fill(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """uint8 0/1 mask of the outline minus its holes."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygons[0]).astype(np.int32)], 1, lineType=cv2.LINE_8)
    if len(polygons) > 1:
        cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in polygons[1:]], 0, lineType=cv2.LINE_8)
    return mask


def _object_mask(size: int, placed: list[np.ndarray]) -> np.ndarray:
    """uint8 0/1 mask of the placed object, never empty: at a few pixels a ring's hole can cover all of it (then the
    outline is filled without holes) or the whole outline can round to points outside the image (then the pixel
    nearest its centre is set)."""
    mask = _fill((size, size), placed)
    if not mask.any():
        mask = _fill((size, size), placed[:1])
    if not mask.any():
        x, y = np.clip(np.round(placed[0].mean(axis=0)), 0, size - 1).astype(int)
        mask[y, x] = 1
    return mask


def _place(polygons: list[np.ndarray], size: int, radius: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Rotate, scale to ``radius`` pixels and move to a random centre keeping the shape inside the image."""
    a = rng.uniform(0, 2 * math.pi)
    rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = rng.uniform(radius, size - radius, 2)
    return [p @ rotation.T * radius + centre for p in polygons]


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    cells = int(rng.integers(2, 6))
    field = cv2.resize(rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32), (size, size),
                       interpolation=cv2.INTER_CUBIC)
    return field + rng.normal(0, 12, (size, size, 3)).astype(np.float32)


def _paint(image: np.ndarray, mask: np.ndarray, texture: np.ndarray) -> None:
    image[mask.astype(bool)] = texture[mask.astype(bool)]


def synthetic_image(size: int, group: int, image: int, seed: int = 0,
                    with_object: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Image number ``image`` of group number ``group``: ``(size, size, 3)`` uint8 RGB and its mask
    ``(size, size)`` uint8 0/1. The group fixes the object (shape ``SHAPES[group % 5]``); ``seed`` the whole set."""
    if whole_number("size", size) < 1:
        raise ValueError(f"size must be >= 1 (pixels), got {size}")
    check_count(seed, 0, "seed")
    group_rng = np.random.default_rng([seed, group])
    outline = _outline(SHAPES[group % len(SHAPES)], group_rng)
    colours = group_rng.uniform(20, 235, (2, 3))
    angle, period = group_rng.uniform(0, math.pi), group_rng.uniform(4, 10)

    rng = np.random.default_rng([seed, group, image])
    picture = _background(size, rng)
    for _ in range(int(rng.integers(2, 5))):
        other = _outline(SHAPES[int(rng.integers(len(SHAPES)))], rng)
        texture = _stripes(size, rng.uniform(0, 255, (2, 3)), rng.uniform(0, math.pi), rng.uniform(3, 12),
                           rng.uniform(0, 2 * math.pi))
        _paint(picture, _fill((size, size), _place(other, size, size * rng.uniform(0.08, 0.2), rng)), texture)
    mask = np.zeros((size, size), np.uint8)
    if with_object:
        placed = _place(outline, size, size * rng.uniform(0.18, 0.32), rng)
        mask = _object_mask(size, placed)
        a = rng.uniform(0, 2 * math.pi)  # the stripes turn with the object
        texture = _stripes(size, colours * rng.uniform(0.85, 1.15), angle + a, period, rng.uniform(0, 2 * math.pi))
        _paint(picture, mask, texture)
    return np.clip(picture, 0, 255).astype(np.uint8), mask


def _targets(root: Path, layout: str, group: str, index: int, stem: str) -> tuple[Path, Path]:
    """(image path, mask path) of one sample in ``layout``."""
    if layout == "icoseg":
        return root / "images" / group / f"{stem}.jpg", root / "ground_truth" / group / f"{stem}.png"
    if layout == "internet":
        return root / "Data" / group / f"{stem}.jpg", root / "Data" / group / "GroundTruth" / f"{stem}.png"
    if layout == "sbcoseg":
        folder = root / SBCOSEG_SUBSETS[index % len(SBCOSEG_SUBSETS)] / group
        return folder / f"{stem}.jpg", folder / f"{stem}.png"
    return root / "images" / group / f"{stem}.jpg", root / "masks" / group / f"{stem}.png"


def make_synthetic_coseg(
    root: PathLike,
    num_groups: int = 4,
    images_per_group: int = 6,
    size: int = 128,
    seed: int = 0,
    layout: str = "icoseg",
    group_names: Optional[Sequence[str]] = None,
    empty_per_group: int = 0,
) -> Path:
    """Write ``num_groups`` × ``images_per_group`` JPEG images with PNG masks (0/255) under ``root``; return it.
    Each file is written atomically (:func:`~coseg.atomic.write_bytes_atomic`): a killed run leaves no part of one.

    ``layout``: icoseg, internet, sbcoseg (groups spread over the subset folders in turn) or folders
    (``images/`` + ``masks/``). ``group_names`` default to ``00-star``, ``01-ellipse``, ...; the last
    ``empty_per_group`` images of each group lack the object (empty mask), like the Internet set's noise images."""
    if layout not in SYNTHETIC_LAYOUTS:
        raise ValueError(f"unknown layout '{layout}'; valid: {', '.join(SYNTHETIC_LAYOUTS)}")
    if whole_number("num_groups", num_groups) < 1 or whole_number("images_per_group", images_per_group) < 1:
        raise ValueError(f"num_groups and images_per_group must be >= 1, got {num_groups} and {images_per_group}")
    if group_names is None:
        group_names = [f"{g:02d}-{SHAPES[g % len(SHAPES)]}" for g in range(num_groups)]
    if len(group_names) != num_groups or len(set(group_names)) != num_groups:
        raise ValueError(f"need {num_groups} distinct group names, got {list(group_names)}")
    outside = [g for g in group_names if g.startswith("/") or {"", ".", ".."} & set(g.split("/"))]
    if outside:
        raise ValueError(f"group names must name folders under the root (no empty part, '.' or '..'), got {outside}")
    if not 0 <= whole_number("empty_per_group", empty_per_group) <= images_per_group:
        raise ValueError(f"empty_per_group must be in [0, {images_per_group}], got {empty_per_group}")
    root = Path(root)
    for g, group in enumerate(group_names):
        for i in range(images_per_group):
            image, mask = synthetic_image(size, g, i, seed, with_object=i < images_per_group - empty_per_group)
            image_path, mask_path = _targets(root, layout, group, g, f"img{i:03d}")
            for path, ext, array in ((image_path, ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR)),
                                     (mask_path, ".png", mask * 255)):
                write_bytes_atomic(path, cv2.imencode(ext, array)[1].tobytes())
    return root
