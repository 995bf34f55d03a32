"""Writers of small test image and mask files in the encodings the data layer must accept or reject."""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def write_cv2(path: Path, array: np.ndarray, ext: str = ".png") -> Path:
    """Encode with OpenCV (arrays as OpenCV takes them: BGR, any depth) and write; works for any file name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(ext, array)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def write_pil(path: Path, image: Image.Image, fmt: str = "PNG", **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    path.write_bytes(buffer.getvalue())
    return path


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    """An RGB uint8 array as JPEG or PNG, chosen by the suffix."""
    return write_cv2(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), path.suffix)


def write_exif_jpeg(path: Path, rgb: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return write_pil(path, Image.fromarray(rgb), "JPEG", quality=95, exif=exif.tobytes())


def write_palette(path: Path, indices: np.ndarray) -> Path:
    image = Image.fromarray(indices.astype(np.uint8), "P")
    image.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 255, 0] + [7] * (256 * 3 - 12))
    return write_pil(path, image)


def half_mask(height: int = 12, width: int = 16) -> np.ndarray:
    """A bool mask whose left half is foreground."""
    mask = np.zeros((height, width), bool)
    mask[:, : width // 2] = True
    return mask


def left_red_image(height: int = 12, width: int = 16) -> np.ndarray:
    """RGB uint8: red left half, blue right half (orientation shows in where red ends up)."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, : width // 2] = (255, 0, 0)
    rgb[:, width // 2:] = (0, 0, 255)
    return rgb
