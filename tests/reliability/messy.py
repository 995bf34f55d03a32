"""Data sets holding every kind of bad input a new user brings, generated on the fly (PIL, OpenCV, numpy).

Each case is a file named after it, so a test can find the case in any report that names files."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from PIL import Image

from coseg.data import make_synthetic_coseg
from tests.coseg.files import write_cv2, write_exif_jpeg, write_pil, write_rgb

NON_UTF8_STEM = os.fsdecode(b"caf\xc3\xa9 \xff odd, 'name'!")
LONG_STEM = "long_" + "x" * 240  # 249 + ".jpg" = 253 bytes: just under the usual 255-byte limit of a file name


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _encoded(rgb: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, rgb)
    assert ok
    return data.tobytes()


def write_bad_images(folder: Path) -> dict[str, str]:
    """Unreadable images in ``folder``: {file name: words the error must contain}."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg, png = _encoded(_texture(48, 48, 1), ".jpg"), _encoded(_texture(48, 48, 2), ".png")
    files = {
        "zero_bytes.jpg": (b"", "empty file"),
        "truncated_jpeg.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "truncated_png.png": (png[: len(png) // 2], "not a decodable image"),
        "text_named.jpg": (b"this is a text file, not a JPEG\n", "not a decodable image"),
        f"{NON_UTF8_STEM} cut.jpg": (jpeg[: len(jpeg) // 3], "truncated"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: words for name, (_, words) in files.items()}


def write_odd_images(folder: Path, masks: Optional[Path] = None) -> dict[str, tuple[int, int]]:
    """Readable images in unusual encodings: grayscale, RGBA, 16-bit PNG, CMYK JPEG, EXIF-rotated JPEG, 1 × 1, a
    non-UTF-8 and a very long name; with ``masks``, a 0/255 mask of each (top half foreground) at its viewed size.
    Returns {file name: viewed (H, W)}."""
    rgb = _texture(40, 56, 3)
    alpha = np.full(rgb.shape[:2], 90, np.uint8)
    writers = {
        "gray.png": lambda p: write_cv2(p, rgb[..., 0]),
        "rgba.png": lambda p: write_pil(p, Image.fromarray(np.dstack([rgb, alpha]), "RGBA")),
        "deep16.png": lambda p: write_cv2(p, rgb.astype(np.uint16) * 257),
        "cmyk.jpg": lambda p: write_pil(p, Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=90),
        "exif_rotated.jpg": lambda p: write_exif_jpeg(p, rgb, 6),
        "one_pixel.png": lambda p: write_rgb(p, rgb[:1, :1]),
        f"{NON_UTF8_STEM}.jpg": lambda p: write_rgb(p, rgb),
        f"{LONG_STEM}.jpg": lambda p: write_rgb(p, rgb),
    }
    sizes = {name: (40, 56) for name in writers} | {"exif_rotated.jpg": (56, 40), "one_pixel.png": (1, 1)}
    for name, write in writers.items():
        write(folder / name)
        if masks is not None:
            h, w = sizes[name]
            mask = np.zeros((h, w), np.uint8)
            mask[: h // 2 + 1] = 255
            write_cv2(masks / f"{Path(name).stem}.png", mask)
    return sizes


def messy_coseg_set(root: Path) -> dict:
    """A ``folders``-layout co-segmentation set (``root/images/<group>``, ``root/masks/<group>``): 3 good synthetic
    groups of 4 images, plus

    - group ``odd``: the readable oddities of ``write_odd_images`` with masks, and unreadable images (with masks);
    - group ``odd`` also: a mask of another size, a mask with grey levels, an image without mask, a mask without
      image;
    - ``nested/inner``: a group two folders deep; ``linked``: a symlink to a group folder outside ``root``;
    - ``solo``: a group of one image; ``empty``: an empty group folder.

    Returns the names of the cases, by kind (unreadable images and bad masks with a pattern their error matches)."""
    make_synthetic_coseg(root, num_groups=3, images_per_group=4, size=64, seed=0, layout="folders")
    images, masks = root / "images", root / "masks"
    odd, odd_masks = images / "odd", masks / "odd"
    readable = write_odd_images(odd, odd_masks)
    unreadable = write_bad_images(odd)
    for name in unreadable:
        write_cv2(odd_masks / f"{Path(name).stem}.png", np.zeros((48, 48), np.uint8))
    write_rgb(odd / "wrong_size_mask.jpg", _texture(40, 56, 4))
    write_cv2(odd_masks / "wrong_size_mask.png", np.zeros((20, 40), np.uint8))  # not the image's aspect ratio
    write_rgb(odd / "grey_levels_mask.jpg", _texture(40, 56, 5))
    grey = np.zeros((40, 56), np.uint8)
    grey[:10], grey[10:20] = 128, 255
    write_cv2(odd_masks / "grey_levels_mask.png", grey)
    write_rgb(odd / "no_mask.jpg", _texture(40, 56, 6))
    write_cv2(odd_masks / "no_image.png", np.zeros((40, 56), np.uint8))
    for group, seed in (("nested/inner", 7), ("solo", 8)):
        for k in range(1 if group == "solo" else 2):
            write_rgb(images / group / f"n{k}.jpg", _texture(40, 56, seed + k))
            write_cv2(masks / group / f"n{k}.png", np.tile(np.uint8([[0], [255]]), (20, 56)))
    outside = root.parent / f"{root.name}_elsewhere"
    for k in range(2):
        write_rgb(outside / "images" / f"l{k}.jpg", _texture(40, 56, 20 + k))
        write_cv2(outside / "masks" / f"l{k}.png", np.tile(np.uint8([[0], [255]]), (20, 56)))
    (images / "linked").symlink_to(outside / "images", target_is_directory=True)
    (masks / "linked").symlink_to(outside / "masks", target_is_directory=True)
    (images / "empty").mkdir()
    return {"readable": readable, "unreadable": unreadable,
            "bad_masks": {"wrong_size_mask.png": r"20 ?(x|, ) ?40", "grey_levels_mask.png": "0, 128, 255"},
            "image_without_mask": "no_mask.jpg", "mask_without_image": "no_image.png"}
