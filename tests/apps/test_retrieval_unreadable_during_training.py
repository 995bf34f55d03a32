"""Retrieval training with an image unreadable during the run (its disk-cache copy and its source both gone): the
training item is replaced by another image of its class, validation leaves it out, and the run reports it."""
from __future__ import annotations

import csv
from pathlib import Path

import torch

import apps.retrieval.train
import coseg.data.cache
from apps.retrieval.datasets import load_retrieval_split
from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.train import train
from coseg.data import ImageCache
from coseg.engine import Engine
from tests.apps.retrieval_runs import tiny_config, tiny_set


def remove_cache_and(cache_dir: Path, *images: Path) -> None:
    for stored in cache_dir.glob("*.npz"):
        stored.unlink()
    for image in images:
        image.unlink()


def test_an_unreadable_image_is_replaced_by_one_of_its_class(tmp_path, monkeypatch):
    monkeypatch.setattr(coseg.data.cache, "MEMORY_SHARE", 0.0)
    data = tiny_set(tmp_path / "data", per_class=3)
    records = load_retrieval_split(data, "train").records
    ds = RetrievalImageDataset(records, 32, ImageCache(32, cache_dir=tmp_path / "cache", progress=False),
                               substitute=True)
    victim = next(i for i, r in enumerate(ds.records) if r.label == ds.records[-1].label)
    remove_cache_and(tmp_path / "cache", ds.records[victim].path)
    item = ds[victim]
    assert item["unreadable"] == str(ds.records[victim].path) and item["label"] == ds.records[victim].label
    peer = next(i for i, r in enumerate(ds.records) if r.label == item["label"] and i > victim)
    assert torch.equal(item["image"], ds[peer]["image"]) and ds[peer]["unreadable"] == ""


def test_training_goes_on_and_reports_an_image_unreadable_during_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(coseg.data.cache, "MEMORY_SHARE", 0.0)
    cfg = tiny_config(tiny_set(tmp_path / "data"), tmp_path / "run", mode="end_to_end", epochs=2,
                      cache_dir=str(tmp_path / "cache"))
    broken: list[Path] = []
    shapes: list[tuple[int, ...]] = []

    class BreakingEngine(Engine):
        def fit(self, task, loader, resume=False, **kwargs):
            broken.extend([loader.dataset.records[0].path, task.validation.images.records[0].path])
            remove_cache_and(tmp_path / "cache", *broken)
            step = task.train_step
            task.train_step = lambda model, batch, device: shapes.append(tuple(batch["image"].shape)) or step(
                model, batch, device)
            return super().fit(task, loader, resume, **kwargs)

    monkeypatch.setattr(apps.retrieval.train, "Engine", BreakingEngine)
    result = train(cfg)

    assert result.stages["end_to_end"].epochs_run == 2 and set(shapes) == {(4, 3, 32, 32)}
    assert [f for f, _ in result.skipped] == broken
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(int(r["unreadable"]) >= 2 for r in rows)
    assert all(r["val_MAP@R"] for r in rows)
    err = capsys.readouterr().err
    for path in broken:
        assert err.count(f"warning: {path}: ") == 1


def test_validation_left_unscorable_mid_run_keeps_the_best_scored_model(tmp_path, monkeypatch, capsys):
    """A validation class lost after epoch 1 leaves a single class (MAP@R 100 whatever the model): the later epochs
    are not scored, not selected, and the run says why once."""
    monkeypatch.setattr(coseg.data.cache, "MEMORY_SHARE", 0.0)
    cfg = tiny_config(tiny_set(tmp_path / "data"), tmp_path / "run", mode="end_to_end", epochs=3,
                      cache_dir=str(tmp_path / "cache"))
    scored = apps.retrieval.train.Validation.__call__
    calls: list[dict[str, float]] = []

    def score_then_lose_a_class(self, learner):
        calls.append(scored(self, learner))
        if len(calls) == 1:
            kept = int(self.labels[0])
            remove_cache_and(tmp_path / "cache", *[r.path for r, label in zip(self.images.records, self.labels)
                                                   if int(label) != kept])
        return calls[-1]

    monkeypatch.setattr(apps.retrieval.train.Validation, "__call__", score_then_lose_a_class)
    result = train(cfg)

    with open(tmp_path / "run" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["val_MAP@R"] == "nan" for r in rows] == [False, True, True]
    assert result.stages["end_to_end"].best_epoch == 1
    err = capsys.readouterr().err
    assert err.count("too few to score") == 1 and "the best model stays the best one scored before" in err
