"""``retrieval export`` of a data set whose masks pair with their images by a suffix (``a.jpg``, ``a_mask.png``):
the layouts' "paired by suffix" note leaves nothing out, so it is not listed as a skipped file."""
from pathlib import Path

import numpy as np
from PIL import Image

from apps.retrieval.export import scan_images


def test_masks_paired_by_suffix_leave_nothing_skipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for group in ("cats", "dogs"):
        for stem in ("a", "b"):
            (tmp_path / "images" / group).mkdir(parents=True, exist_ok=True)
            (tmp_path / "masks" / group).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                tmp_path / "images" / group / f"{stem}.jpg")
            Image.fromarray((rng.random((16, 16)) > 0.5).astype(np.uint8) * 255).save(
                tmp_path / "masks" / group / f"{stem}_mask.png")
    items, problems = scan_images(tmp_path)
    assert [item.relative for item in items] == ["images/cats/a.jpg", "images/cats/b.jpg", "images/dogs/a.jpg",
                                                 "images/dogs/b.jpg"]
    assert problems == []
