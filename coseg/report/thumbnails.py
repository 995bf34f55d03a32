"""Small PNG thumbnails for the reports: images, and images with a mask tinted over them."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from coseg.atomic import write_bytes_atomic
from coseg.data.io import encode_png
from coseg.predict import RED as PREDICTION_COLOUR
from coseg.predict import overlay

GROUND_TRUTH_COLOUR = (40, 200, 60)


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` (H, W[, 3]) scaled so that its longer side is at most ``max_side`` (aspect kept; never enlarged).
    Boolean masks are resized with nearest neighbours and stay boolean."""
    if max_side < 1:
        raise ValueError(f"thumbnail size must be >= 1, got {max_side}")
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if image.dtype == np.bool_:
        return cv2.resize(image.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def write_thumbnail(path: Path, image: np.ndarray, max_side: int, mask: Optional[np.ndarray] = None,
                    colour: tuple[int, int, int] = PREDICTION_COLOUR) -> None:
    """Write ``image`` (H, W, 3) uint8 RGB as a PNG thumbnail, with ``mask`` (H, W) bool tinted ``colour`` over it
    when given. A mask of another size than the image (e.g. ground truth of an EXIF-rotated photo) is resized to
    the thumbnail. The file is written to a temporary one renamed over ``path`` (never seen half-written) but not
    fsynced: the next report makes it again, and an fsync per thumbnail would take most of a report's time."""
    small = shrink(image, max_side)
    if mask is not None:
        fitted = cv2.resize(mask.astype(np.uint8), (small.shape[1], small.shape[0]),
                            interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
        small = overlay(small, fitted, colour=colour)
    write_bytes_atomic(path, encode_png(small, path), fsync=False)
