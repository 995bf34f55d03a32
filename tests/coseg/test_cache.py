"""coseg.data.cache: decode once, resize, skip and list bad files, persist across runs."""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from PIL import Image

import coseg.data.cache as cache_module
from coseg.data import ImageCache, Sample, find_samples, make_synthetic_coseg, read_pair, resize_image, resize_mask
from tests.coseg.files import half_mask, left_red_image, write_cv2, write_rgb


@pytest.fixture
def scan(tmp_path):
    return find_samples(make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=3, size=48))


def test_load_decodes_and_resizes(scan):
    cache = ImageCache(32, progress=False)
    assert cache.load(scan.samples) == scan.samples
    assert len(cache) == 6 and cache.decoded == 6 and cache.from_disk == 0 and cache.skipped == []
    for sample in scan.samples:
        entry = cache[sample]
        assert entry.image.shape == (32, 32, 3) and entry.image.dtype == np.uint8
        assert entry.mask.shape == (32, 32) and entry.mask.dtype == np.uint8
        assert set(np.unique(entry.mask)) <= {0, 1} and entry.mask.any()
        assert entry.size == (48, 48)
        image, mask = read_pair(sample.image, sample.mask)
        np.testing.assert_array_equal(entry.image, resize_image(image, 32))
        np.testing.assert_array_equal(entry.mask, resize_mask(mask, 32))


def test_load_is_idempotent(scan):
    cache = ImageCache(16, progress=False)
    cache.load(scan.samples[:2])
    assert cache.load(scan.samples) == scan.samples and cache.decoded == 6


def test_resize_helpers():
    image = np.zeros((10, 30, 3), np.uint8)
    image[:, :15] = 200
    small = resize_image(image, 8)
    assert small.shape == (8, 8, 3) and small[0, 0, 0] == 200 and small[0, -1, 0] == 0
    assert resize_image(image, 40).shape == (40, 40, 3)  # enlarging works too
    mask = resize_mask(half_mask(10, 30), 7)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}


def test_bad_files_are_skipped_counted_and_named(scan, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("not an image")
    full = write_rgb(bad / "full.jpg", np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    (bad / "cut.jpg").write_bytes(full.read_bytes()[:300])
    write_rgb(bad / "big.jpg", left_red_image(20, 20))
    write_cv2(bad / "small.png", half_mask(10, 14).astype(np.uint8) * 255)  # not the image's aspect ratio
    write_cv2(bad / "grey.png", np.full((48, 48), 128, np.uint8))
    broken = [Sample(bad / "empty.jpg", None, "x"), Sample(bad / "text.jpg", None, "x"),
              Sample(bad / "cut.jpg", None, "x"), Sample(bad / "big.jpg", bad / "small.png", "x"),
              Sample(scan.samples[0].image, bad / "grey.png", "x"), Sample(bad / "missing.jpg", None, "x")]
    cache = ImageCache(16, progress=False)
    samples = scan.samples[:3] + broken + scan.samples[3:]
    assert cache.load(samples) == scan.samples
    reasons = {path.name: reason for path, reason in cache.skipped}
    assert [p.name for p, _ in cache.skipped] == ["empty.jpg", "text.jpg", "cut.jpg", "small.png", "grey.png",
                                                   "missing.jpg"]
    assert "empty" in reasons["empty.jpg"] and "not a decodable image" in reasons["text.jpg"]
    assert "10x14" in reasons["small.png"] and "128" in reasons["grey.png"] and "cannot read" in reasons["missing.jpg"]
    assert cache.load(broken) == [] and len(cache.skipped) == 6  # failures are not retried or counted twice


def test_disk_cache_skips_decoding_on_second_run(scan, tmp_path):
    first = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    first.load(scan.samples)
    assert first.decoded == 6 and len(list((tmp_path / "cache").glob("*.npz"))) == 6
    second = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    second.load(scan.samples)
    assert second.decoded == 0 and second.from_disk == 6
    for s in scan.samples:
        np.testing.assert_array_equal(second[s].image, first[s].image)
        np.testing.assert_array_equal(second[s].mask, first[s].mask)
        assert second[s].size == first[s].size
    other_size = ImageCache(8, cache_dir=tmp_path / "cache", progress=False)
    other_size.load(scan.samples)
    assert other_size.decoded == 6


def test_disk_cache_notices_changed_files(scan, tmp_path):
    ImageCache(16, cache_dir=tmp_path / "cache", progress=False).load(scan.samples)
    changed = scan.samples[0].mask
    stat = os.stat(changed)
    write_cv2(changed, np.zeros((48, 48), np.uint8))
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    again.load(scan.samples)
    assert again.decoded == 1 and again.from_disk == 5
    assert not again[scan.samples[0]].mask.any()


def test_corrupt_cache_files_are_decoded_again(scan, tmp_path):
    first = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    first.load(scan.samples)
    for path in (tmp_path / "cache").glob("*.npz"):
        path.write_bytes(path.read_bytes()[:50])
    again = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    again.load(scan.samples)
    assert again.decoded == 6 and again.skipped == []
    assert all(np.array_equal(again[s].image, first[s].image) for s in scan.samples)
    rewritten = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    rewritten.load(scan.samples)
    assert rewritten.from_disk == 6


def test_entries_of_an_earlier_format_are_decoded_again(tmp_path, monkeypatch):
    """Format 1 read a black-and-white palette mask with white at index 0 inverted: its entries are not reused."""
    image = write_rgb(tmp_path / "a.png", left_red_image())
    mask = tmp_path / "a.gif"
    Image.fromarray(half_mask().astype(np.uint8) * 255).convert("RGB").save(mask, "GIF")  # white at index 0
    sample = Sample(image, mask, "g")
    with monkeypatch.context() as old:
        old.setattr(cache_module, "_FORMAT", 1)
        old.setattr(cache_module, "read_pair", lambda *args, **kwargs: (left_red_image(), ~half_mask()))
        ImageCache(16, cache_dir=tmp_path / "cache", progress=False).load([sample])
    cache = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    cache.load([sample])
    assert cache.decoded == 1
    np.testing.assert_array_equal(cache[sample].mask, resize_mask(half_mask(), 16))


def test_entries_of_format_2_are_decoded_again(tmp_path, monkeypatch):
    """Format 2 read a 16-bit colour mask holding 0 and 255 as all background: its entries are not reused."""
    image = write_rgb(tmp_path / "a.png", left_red_image())
    deep = np.repeat(half_mask().astype(np.uint16)[..., None] * np.uint16(255), 3, axis=2)
    sample = Sample(image, write_cv2(tmp_path / "m.png", deep), "g")
    with monkeypatch.context() as old:
        old.setattr(cache_module, "_FORMAT", 2)
        empty = np.zeros((12, 16), bool)
        old.setattr(cache_module, "read_pair", lambda *args, **kwargs: (left_red_image(), empty))
        ImageCache(16, cache_dir=tmp_path / "cache", progress=False).load([sample])
    cache = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    cache.load([sample])
    assert cache.decoded == 1
    np.testing.assert_array_equal(cache[sample].mask, resize_mask(half_mask(), 16))


def test_unwritable_cache_folder_is_a_clear_error(scan, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="cannot write to the cache folder .*a_file"):
        ImageCache(16, cache_dir=tmp_path / "a_file", progress=False).load(scan.samples)
    import coseg.data.cache as cache_module

    ImageCache(16, cache_dir=tmp_path / "cache", progress=False).load(scan.samples)

    def full(path, data, fsync=True):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cache_module, "write_bytes_atomic", full)
    filled = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)  # everything stored: only read
    filled.load(scan.samples)
    assert filled.from_disk == 6
    with pytest.raises(ValueError, match=r"cannot write to the cache folder .*cache \(No space left on device\)"):
        ImageCache(32, cache_dir=tmp_path / "cache", progress=False).load(scan.samples)


def test_samples_without_masks(scan):
    unlabelled = [Sample(s.image, None, s.group) for s in scan.samples]
    cache = ImageCache(16, progress=False)
    cache.load(unlabelled)
    assert all(cache[s].mask is None and cache[s].image.shape == (16, 16, 3) for s in unlabelled)


def test_progress_bar_can_be_silenced(scan, capsys):
    ImageCache(16, progress=False).load(scan.samples)
    assert capsys.readouterr().err == ""
    ImageCache(16, progress=True).load(scan.samples)
    assert "decoding 16px" in capsys.readouterr().err


def test_invalid_size():
    with pytest.raises(ValueError, match="image_size"):
        ImageCache(0)


def _room_for(monkeypatch, samples: int, size: int = 16) -> None:
    """Pretend the machine's memory share holds exactly ``samples`` decoded samples with masks at ``size``."""
    monkeypatch.setattr(cache_module, "physical_memory",
                        lambda: int(samples * size * size * 4 / cache_module.MEMORY_SHARE))


def test_samples_beyond_the_memory_share_are_read_from_disk(scan, tmp_path, monkeypatch):
    reference = ImageCache(16, progress=False)
    reference.load(scan.samples)
    _room_for(monkeypatch, 4)
    cache = ImageCache(16, cache_dir=tmp_path / "cache", progress=False)
    assert cache.load(scan.samples[:3]) == scan.samples[:3] and not cache.on_disk  # 3 fit: held
    assert cache.load(scan.samples) == scan.samples and cache.on_disk  # 6 do not: the other 3 stay on disk
    held = [s for s in scan.samples if isinstance(cache._entries[s], cache_module.Decoded)]
    assert held == scan.samples[:3]
    for sample in scan.samples:
        np.testing.assert_array_equal(cache[sample].image, reference[sample].image)
        np.testing.assert_array_equal(cache[sample].mask, reference[sample].mask)
        assert cache[sample].size == reference[sample].size
    for stored in (tmp_path / "cache").iterdir():  # a cache file removed during the run: decoded again
        stored.unlink()
    np.testing.assert_array_equal(cache[scan.samples[-1]].image, reference[scan.samples[-1]].image)


def test_too_many_samples_without_a_cache_folder_are_refused_up_front(scan, monkeypatch):
    _room_for(monkeypatch, 5)
    with pytest.raises(ValueError, match=r"6 images decoded at 16 px would take .* GB .*--cache-dir"):
        ImageCache(16, progress=False).load(scan.samples)
    _room_for(monkeypatch, 6)
    assert len(ImageCache(16, progress=False).load(scan.samples)) == 6
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: two processes each hold a cache
    with pytest.raises(ValueError, match="--cache-dir"):
        ImageCache(16, progress=False).load(scan.samples)


def test_a_resized_mask_stays_on_its_images_pixels(tmp_path):
    """The image's channels hold each source pixel's x and y, so a training pixel shows which source point it
    samples; its mask must be the source mask at that point (OpenCV's plain nearest neighbour took the pixel at the
    corner: 44 % of a checkerboard's pixels disagreed)."""
    height, width, size = 240, 256, 64
    yy, xx = np.mgrid[0:height, 0:width]
    image = write_cv2(tmp_path / "a.png", np.stack([np.zeros_like(xx), yy, xx], -1).astype(np.uint8))  # BGR
    checkerboard = ((yy // 4 + xx // 4) % 2).astype(bool)
    mask = write_cv2(tmp_path / "a_mask.png", checkerboard.astype(np.uint8) * 255)
    decoded = cache_module.decode_sample(Sample(image, mask, "g"), size)
    x, y = (np.round(decoded.image[..., c].astype(float)).astype(int) for c in (0, 1))
    np.testing.assert_array_equal(decoded.mask.astype(bool), checkerboard[y.clip(0, height - 1), x.clip(0, width - 1)])
