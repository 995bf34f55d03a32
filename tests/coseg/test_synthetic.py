"""coseg.data.synthetic: deterministic, every layout, one common object per group on varied clutter."""
from __future__ import annotations

import numpy as np
import pytest

from coseg.data import SYNTHETIC_LAYOUTS, find_samples, make_synthetic_coseg, read_pair, synthetic_image


def files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_deterministic_under_a_seed(tmp_path):
    a = make_synthetic_coseg(tmp_path / "a", num_groups=2, images_per_group=3, size=32, seed=5)
    b = make_synthetic_coseg(tmp_path / "b", num_groups=2, images_per_group=3, size=32, seed=5)
    c = make_synthetic_coseg(tmp_path / "c", num_groups=2, images_per_group=3, size=32, seed=6)
    assert files(a) == files(b) and len(files(a)) == 12
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files(a))
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files(a) if f in files(c))


@pytest.mark.parametrize("layout", SYNTHETIC_LAYOUTS)
def test_every_layout_reads_back_with_binary_masks(tmp_path, layout):
    root = make_synthetic_coseg(tmp_path, num_groups=3, images_per_group=4, size=40, layout=layout, empty_per_group=1)
    scan = find_samples(root, layout)
    assert len(scan.labelled) == 12 and len(scan.groups) == 3 and scan.problems == []
    for s in scan.samples:
        image, mask = read_pair(s.image, s.mask, any_nonzero=s.any_nonzero)
        assert image.shape == (40, 40, 3) and mask.shape == (40, 40)
        fraction = mask.mean()
        assert (fraction == 0) if s.image.stem == "img003" else (0.02 < fraction < 0.5)


def test_the_object_is_common_within_a_group_and_differs_across_groups():
    """Mean object colour: close within a group, far across groups; backgrounds differ within a group."""
    colours, backgrounds = {}, {}
    for g in range(4):
        pairs = [synthetic_image(64, g, i) for i in range(5)]
        colours[g] = np.array([img[m.astype(bool)].mean(0) for img, m in pairs])
        backgrounds[g] = np.array([img[~m.astype(bool)].astype(float) for img, m in pairs], dtype=object)
        assert all(not np.array_equal(pairs[0][1], m) for _, m in pairs[1:])  # pose changes
    within = np.mean([np.linalg.norm(c - c.mean(0), axis=1).mean() for c in colours.values()])
    across = np.mean([np.linalg.norm(colours[a].mean(0) - colours[b].mean(0)) for a in range(4) for b in range(a)])
    assert within * 2 < across
    first, second = synthetic_image(64, 0, 0)[0], synthetic_image(64, 0, 1)[0]
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 30  # clutter differs from image to image


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown layout 'voc'"):
        make_synthetic_coseg(tmp_path, layout="voc")
    with pytest.raises(ValueError, match="need 2 distinct group names"):
        make_synthetic_coseg(tmp_path, num_groups=2, group_names=["a", "a"])
    with pytest.raises(ValueError, match="empty_per_group"):
        make_synthetic_coseg(tmp_path, images_per_group=2, empty_per_group=3)


def test_masks_are_exactly_the_object_pixels(tmp_path):
    """The object is painted in two colours found nowhere else, so its mask is those colours' pixels; on disk the
    PNG mask is that mask and the JPEG image that image, unshifted, up to compression."""
    for g in range(5):
        for i in range(3):
            image, mask = synthetic_image(48, g, i, seed=2)
            colours = np.unique(image[mask.astype(bool)], axis=0)
            assert 1 <= len(colours) <= 2
            assert np.array_equal((image[..., None, :] == colours).all(-1).any(-1), mask.astype(bool))
    root = make_synthetic_coseg(tmp_path, num_groups=2, images_per_group=2, size=48, seed=2)
    for s in find_samples(root, "icoseg").samples:
        g, i = int(s.group[:2]), int(s.image.stem[3:])
        image, mask = read_pair(s.image, s.mask, any_nonzero=s.any_nonzero)
        expected_image, expected_mask = synthetic_image(48, g, i, seed=2)
        assert np.array_equal(mask.astype(np.uint8), expected_mask)
        error = {(dy, dx): np.abs(image[1:-1, 1:-1].astype(int) - expected_image[1 + dy:47 + dy, 1 + dx:47 + dx]).mean()
                 for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
        shifted = min(v for k, v in error.items() if k != (0, 0))
        assert error[0, 0] < 0.9 * shifted  # JPEG noise (its 4:2:0 colour smears the stripes), but no shift
