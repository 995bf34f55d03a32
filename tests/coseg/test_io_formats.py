"""Image file formats: the suffixes the layouts take (any case), decoded; image formats not read are reported."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from coseg.data import LayoutError, find_samples, read_image
from tests.coseg.files import half_mask, left_red_image, write_cv2, write_pil

# suffix -> Pillow format writing it; the lossy ones are compared loosely
WRITERS = {".jfif": "JPEG", ".jpe": "JPEG", ".JPG": "JPEG", ".gif": "GIF", ".GIF": "GIF", ".jp2": "JPEG2000"}


def write_image(path, rgb: np.ndarray):
    return write_pil(path, Image.fromarray(rgb), WRITERS[path.suffix], **({"quality": 95}
                                                                            if WRITERS[path.suffix] == "JPEG" else {}))


@pytest.mark.parametrize("suffix", list(WRITERS))
def test_image_formats_are_found_and_decoded(tmp_path, suffix):
    root = tmp_path / "data"
    write_image(root / "images" / "g" / f"a{suffix}", left_red_image())
    write_cv2(root / "masks" / "g" / "a.png", half_mask().astype(np.uint8) * 255)
    scan = find_samples(root)
    assert [(s.image.name, s.mask.name) for s in scan.samples] == [(f"a{suffix}", "a.png")] and scan.problems == []
    image = read_image(scan.samples[0].image)
    assert image.shape == (12, 16, 3) and np.abs(image.astype(int) - left_red_image()).mean() < 8


def test_an_animated_gif_is_read_as_its_first_frame(tmp_path):
    first = left_red_image()
    path = tmp_path / "a.gif"
    Image.fromarray(first).save(path, save_all=True, append_images=[Image.fromarray(255 - first)], duration=50)
    np.testing.assert_array_equal(read_image(path), first)


def test_image_files_of_formats_not_read_are_reported_not_ignored(tmp_path):
    root = tmp_path / "data"
    write_image(root / "images" / "g" / "a.JPG", left_red_image())
    (root / "images" / "g" / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    write_cv2(root / "masks" / "g" / "a.png", half_mask().astype(np.uint8) * 255)
    write_image(root / "masks" / "g" / "b.jpe", left_red_image())  # a JPEG mask: lossy, not read
    (root / "images" / "g" / "Thumbs.db").write_bytes(b"x")
    scan = find_samples(root)
    assert [s.image.name for s in scan.samples] == ["a.JPG"]
    assert [(p.kind, p.path.name) for p in scan.problems] == [("unsupported file", "IMG_0001.HEIC"),
                                                              ("unsupported file", "b.jpe")]
    assert "'.heic' files are not read here; use .bmp" in str(scan.problems[0])
    assert "use .bmp, .gif, .png, .tif, .tiff" in str(scan.problems[1])


def test_a_folder_of_only_unsupported_images_names_one(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    with pytest.raises(LayoutError, match=r"no images found .*first: unsupported file: .*IMG_0001.HEIC "
                                          r"\('.heic' files are not read here"):
        find_samples(tmp_path / "photos")


@pytest.mark.parametrize("suffix", [".jfif", ".JPE"])
def test_jpegs_of_every_suffix_beside_their_png_masks_are_sbcoseg_pairs(tmp_path, suffix):
    group = tmp_path / "data" / "g"
    write_pil(group / f"a{suffix}", Image.fromarray(left_red_image()), "JPEG")
    write_cv2(group / "a.png", half_mask().astype(np.uint8) * 255)
    scan = find_samples(tmp_path / "data")
    assert scan.layout == "sbcoseg" and [(s.image.name, s.mask.name) for s in scan.samples] == [(f"a{suffix}", "a.png")]
