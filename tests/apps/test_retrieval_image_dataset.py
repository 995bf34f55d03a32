"""apps.retrieval.image_dataset: uint8 items with labels and indices, decode-once cache, unreadable images skipped
and counted, labels for the PK sampler."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from apps.retrieval import RetrievalImageDataset, load_retrieval_split
from coseg.data import ImageCache, read_image, resize_image
from metric.samplers.pk_sampler import PKBatchSampler
from tests.apps.retrieval_files import write_class_folders, write_sop


@pytest.fixture
def split(tmp_path):
    write_class_folders(tmp_path, ["a", "b", "c"], per_class=4)
    return load_retrieval_split(tmp_path, "all")


def test_items_are_resized_uint8_with_label_and_index(split):
    ds = RetrievalImageDataset(split.records, 16)
    assert len(ds) == 12 and ds.skipped == []
    for i in (0, 7, 11):
        item = ds[i]
        assert set(item) == {"image", "label", "index"}
        assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.uint8
        assert item["label"] == split.records[i].label and item["index"] == i
        expected = resize_image(read_image(split.records[i].path), 16)
        assert np.array_equal(item["image"].permute(1, 2, 0).numpy(), expected)
    assert ds.labels.dtype == torch.long and ds.labels.tolist() == split.labels and ds.super_labels is None


def test_unreadable_images_are_skipped_and_listed(split):
    broken, empty = split.records[1].path, split.records[6].path
    broken.write_bytes(b"\xff\xd8 definitely not a whole JPEG")
    empty.write_bytes(b"")
    ds = RetrievalImageDataset(split.records, 8)
    assert len(ds) == 10
    assert [path for path, _ in ds.skipped] == [broken, empty]
    assert "empty file" in ds.skipped[1][1]
    assert [r.path for r in ds.records] == [r.path for r in split.records if r.path not in (broken, empty)]
    assert ds.labels.tolist() == [r.label for r in ds.records]
    for path in (broken, empty):
        path.write_bytes(b"")
    with pytest.raises(ValueError, match="none of the 2 images could be read; first problem: .*empty file"):
        RetrievalImageDataset([r for r in split.records if r.path in (broken, empty)], 8)


def test_shared_cache_decodes_each_file_once(split):
    cache = ImageCache(8, progress=False)
    RetrievalImageDataset(split.records[:6], 8, cache)
    second = RetrievalImageDataset(split.records, 8, cache)
    assert cache.decoded == 12 and len(second) == 12
    relabelled = [r._replace(label=0) for r in split.records]  # same files, other labels: no new decoding
    assert RetrievalImageDataset(relabelled, 8, cache).labels.tolist() == [0] * 12 and cache.decoded == 12
    with pytest.raises(ValueError, match="cache holds 8px images, dataset wants 16px"):
        RetrievalImageDataset(split.records, 16, cache)


def test_super_labels_and_pk_batches(tmp_path):
    data = load_retrieval_split(write_sop(tmp_path, per_class=2), "train")
    ds = RetrievalImageDataset(data.records, 8)
    assert ds.super_labels.tolist() == [r.super_label for r in data.records] == [0, 0, 0, 0, 1, 1]
    assert ds[4]["super_label"] == 1
    loader = DataLoader(ds, batch_sampler=PKBatchSampler(ds.labels, classes_per_batch=3, samples_per_class=2))
    batch = next(iter(loader))
    assert batch["image"].shape == (6, 3, 8, 8) and batch["image"].dtype == torch.uint8
    assert torch.equal(ds.labels[batch["index"]], batch["label"])
    assert sorted(torch.bincount(batch["label"]).tolist()) == [2, 2, 2]
