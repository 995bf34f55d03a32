"""A file that becomes unreadable during training (the disk cache's copy and the source both gone): the training
item is replaced by another of its group and counted, validation leaves it out, and the run finishes reporting it."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import coseg.data.cache
import coseg.train
from coseg.config import CosegTrainConfig
from coseg.data import CosegDataset, ImageCache, find_samples
from coseg.engine import Engine
from coseg.train import train
from metric.samplers.pk_sampler import PKBatchSampler
from tests.coseg.pipeline_fixtures import synthetic_set


def on_disk_cache(monkeypatch, folder: Path, size: int) -> ImageCache:
    monkeypatch.setattr(coseg.data.cache, "MEMORY_SHARE", 0.0)  # nothing fits in memory: read from disk each time
    return ImageCache(size, cache_dir=folder, progress=False)


def break_files(cache: ImageCache, *images: Path) -> None:
    """Remove every disk-cache file and ``images``: what is left of those samples cannot be read."""
    for stored in cache.cache_dir.glob("*.npz"):
        stored.unlink()
    for image in images:
        image.unlink()


def test_an_unreadable_item_is_replaced_by_one_of_its_group(tmp_path, monkeypatch):
    scan = find_samples(synthetic_set(tmp_path / "data", groups=2, images=3, size=40))
    cache = on_disk_cache(monkeypatch, tmp_path / "cache", 16)
    train_data = CosegDataset(scan.samples, 16, cache, substitute=True)
    val_data = CosegDataset(scan.samples, 16, cache)
    assert cache.on_disk and train_data[0]["unreadable"] == ""
    first, second = train_data.samples[0], train_data.samples[1]
    assert first.group == second.group
    break_files(cache, first.image)

    item = train_data[0]  # the next readable sample of its group takes its place
    assert item["unreadable"] == str(first.image) and item["unreadable_problem"]
    assert item["group"] == 0 and item["index"] == 0 and item["mask"].shape == (16, 16)
    assert torch.equal(item["image"], train_data[1]["image"]) and train_data[1]["unreadable"] == ""
    error = val_data[0]  # not for training: the error, which prediction reports
    assert error["index"] == 0 and error["error"].startswith(f"{first.image}: ")

    loader = DataLoader(train_data, batch_sampler=PKBatchSampler(train_data.group_ids, 2, 2), num_workers=1)
    for batch in loader:  # marks cross worker processes in the batch
        assert batch["image"].shape == (4, 3, 16, 16) and len(batch["unreadable"]) == 4

    for sample in train_data.samples[1:3]:
        sample.image.unlink()
    with pytest.raises(ValueError, match=f"{first.image}: .*none of the 2 other image.* of group"):
        train_data[0]


def test_training_goes_on_and_reports_a_file_unreadable_during_the_run(tmp_path, monkeypatch, capsys):
    data = synthetic_set(tmp_path / "data", groups=3, images=2, size=48)
    monkeypatch.setattr(coseg.data.cache, "MEMORY_SHARE", 0.0)
    cfg = CosegTrainConfig(data=str(data), output=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                           members=1, weights="none", image_size=32, groups_per_batch=2, images_per_group=2,
                           triplet_pixels=8, val_fraction=0.34, device="cpu", quiet=True, epochs=2, workers=1)
    broken: list[Path] = []
    shapes: list[tuple[int, ...]] = []

    class BreakingEngine(Engine):
        def fit(self, task, loader, resume=False, **kwargs):  # start-up is over: files go while the run goes on
            assert loader.dataset.cache.on_disk
            broken.extend([loader.dataset.samples[0].image, task.val_data.samples[0].image])
            break_files(loader.dataset.cache, *broken)
            step = task.train_step
            task.train_step = lambda model, batch, device: shapes.append(tuple(batch["image"].shape)) or step(
                model, batch, device)
            return super().fit(task, loader, resume, **kwargs)

    monkeypatch.setattr(coseg.train, "Engine", BreakingEngine)
    result = train(cfg)

    assert result.fit.epochs_run == 2 and shapes and set(shapes) == {(4, 3, 32, 32)}
    assert [f for f, _ in result.skipped] == broken and all(problem for _, problem in result.skipped)
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(int(r["unreadable"]) >= 2 for r in rows)  # a training item, a validation image
    err = capsys.readouterr().err
    for path in broken:  # warned once, not every epoch
        assert err.count(f"warning: {path}: ") == 1
    assert "took its place in the batch" in err and "left out of the validation score" in err
