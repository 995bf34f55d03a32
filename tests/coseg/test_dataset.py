"""coseg.data.dataset: items, group ids for the PK sampler, unreadable and mask-less samples."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

import pytest

from coseg.data import CosegDataset, ImageCache, Sample, find_samples, make_synthetic_coseg
from metric.samplers.pk_sampler import PKBatchSampler


@pytest.fixture
def scan(tmp_path):
    return find_samples(make_synthetic_coseg(tmp_path / "data", num_groups=3, images_per_group=4, size=40))


def test_items(scan):
    ds = CosegDataset(scan.samples, 24)
    assert len(ds) == 12 and ds.groups == scan.groups
    item = ds[5]
    assert item["image"].shape == (3, 24, 24) and item["image"].dtype == torch.uint8
    assert item["mask"].shape == (24, 24) and item["mask"].dtype == torch.uint8
    assert set(item["mask"].unique().tolist()) == {0, 1}
    assert item["index"] == 5 and ds.groups[item["group"]] == ds.samples[5].group
    assert item["size"].tolist() == [40, 40]
    assert torch.equal(item["image"].permute(1, 2, 0), torch.from_numpy(ds.cache[ds.samples[5]].image))


def test_group_ids_match_items_and_feed_the_pk_sampler(scan):
    ds = CosegDataset(scan.samples, 16)
    assert ds.group_ids.dtype == torch.long and ds.group_ids.tolist() == [ds[i]["group"] for i in range(len(ds))]
    loader = DataLoader(ds, batch_sampler=PKBatchSampler(ds.group_ids, classes_per_batch=2, samples_per_class=2))
    batches = list(loader)
    assert batches
    for batch in batches:
        assert batch["image"].shape == (4, 3, 16, 16) and batch["mask"].shape == (4, 16, 16)
        assert sorted(torch.bincount(batch["group"]).tolist())[-2:] == [2, 2]
        assert torch.equal(ds.group_ids[batch["index"]], batch["group"])


def test_unreadable_samples_are_left_out(scan, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("no")
    samples = [Sample(bad, None, "bad group")] + scan.samples
    cache = ImageCache(16, progress=False)
    ds = CosegDataset(samples, 16, cache=cache)
    assert ds.samples == scan.samples and "bad group" not in ds.groups
    assert [p for p, _ in cache.skipped] == [bad]
    with pytest.raises(ValueError, match="none of the 1 samples could be read; first problem: .*bad.jpg"):
        CosegDataset([samples[0]], 16)
    other = tmp_path / "other.jpg"
    other.write_text("no")
    with pytest.raises(ValueError) as caught:  # a cache shared with other data sets: this one's problem, as text
        CosegDataset([Sample(other, None, "other group")], 16, cache=cache)
    assert str(caught.value).startswith(f"none of the 1 samples could be read; first problem: {other}: not a ")


def test_samples_without_masks_for_prediction(scan):
    ds = CosegDataset([Sample(s.image, None, s.group) for s in scan.samples], 16)
    item = ds[0]
    assert "mask" not in item and item["image"].shape == (3, 16, 16)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 16, 16) and batch["index"].tolist() == [0, 1, 2]


def test_cache_size_must_match(scan):
    with pytest.raises(ValueError, match="cache holds 32px images, dataset wants 16px"):
        CosegDataset(scan.samples, 16, cache=ImageCache(32, progress=False))
