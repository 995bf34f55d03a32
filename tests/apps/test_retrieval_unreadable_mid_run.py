"""Retrieval training with images lost after start-up (on-disk cache mode: cache file and source removed): the head
stage refuses a validation set the loss leaves unscorable, as start-up does, and smart mining leaves lost images
out of its whole-set index, reporting them once."""
from __future__ import annotations

import csv

import pytest
import torch

import apps.retrieval.train
import coseg.data.cache
from apps.retrieval.hooks import ReadableMiner
from apps.retrieval.inference import Embedded
from apps.retrieval.train import train
from coseg.engine import Engine
from metric.miners import SmartMiner
from tests.apps.retrieval_runs import tiny_config, tiny_set
from tests.apps.test_retrieval_unreadable_during_training import remove_cache_and


@pytest.fixture
def on_disk(monkeypatch):
    monkeypatch.setattr(coseg.data.cache, "MEMORY_SHARE", 0.0)


def lose_after_loading(monkeypatch, cache_dir, choose) -> list:
    """Remove the validation images ``choose(data.val.records)`` picks once the training data are loaded."""
    lost = []
    load_training_data = apps.retrieval.train.load_training_data

    def then_lost(*args, **kwargs):
        data = load_training_data(*args, **kwargs)
        lost.extend(choose(data.val.records))
        remove_cache_and(cache_dir, *lost)
        return data

    monkeypatch.setattr(apps.retrieval.train, "load_training_data", then_lost)
    return lost


@pytest.mark.parametrize("keep, message", [
    ({0: 0, 1: 4}, "only the validation class .* could be read since start-up \\(4 validation image"),
    ({0: 1, 1: 1}, "no validation class has two readable images since start-up \\(6 validation image"),
])
def test_the_head_stage_refuses_a_validation_set_left_unscorable(tmp_path, on_disk, monkeypatch, keep, message):
    cfg = tiny_config(tiny_set(tmp_path / "data"), tmp_path / "run", epochs=1, cache_dir=str(tmp_path / "cache"))

    def choose(records):
        return [r.path for r in records if sum(o.label == r.label for o in records[:records.index(r)]) >= keep[r.label]]

    lost = lose_after_loading(monkeypatch, tmp_path / "cache", choose)
    with pytest.raises(ValueError, match=message) as refused:
        train(cfg)
    assert str(lost[0]) in str(refused.value) and "name others with --val-classes" in str(refused.value)
    assert not (tmp_path / "run" / "log.csv").exists()


def test_the_miner_leaves_lost_images_out_and_mines_their_anchors_as_their_stand_ins():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    values = torch.randn(7, 4)
    miner = ReadableMiner(SmartMiner(num_neighbours=6, index="flat"))
    miner.update(Embedded(values, torch.arange(7), [(1, "lost b"), (3, "lost d")]), labels)
    # class 1 is left with one readable image: one lost row stays so that its anchors have a positive
    assert miner.rows.tolist() == [0, 2, 3, 4, 5, 6] and miner.num_samples == 7
    for _ in range(5):
        mined = miner.mine(torch.arange(7))
        assert len(mined) == 7 and 1 not in torch.cat(list(mined)).tolist()
        assert mined.anchor.tolist() == [0, 2, 2, 3, 4, 5, 6]  # anchor 1's stand-in: the next readable of class 0
        assert all(int(labels[p]) == int(labels[a]) and p != a for a, p in zip(mined.anchor, mined.positive))
        assert all(int(labels[n]) != int(labels[a]) for a, n in zip(mined.anchor, mined.negative))


def test_smart_mining_leaves_an_image_lost_during_training_out_of_its_batches(tmp_path, on_disk, monkeypatch, capsys):
    cfg = tiny_config(tiny_set(tmp_path / "data"), tmp_path / "run", mode="end_to_end", epochs=2,
                      sampler="smart_mining", classes_per_batch=3, samples_per_class=2, head_init="random",
                      cache_dir=str(tmp_path / "cache"))
    lost: list = []
    seen: list[int] = []
    marked: list[str] = []

    class BreakingEngine(Engine):
        def fit(self, task, loader, resume=False, **kwargs):
            records = loader.dataset.records
            lost.append(next(i for i, r in enumerate(records) if r.label == records[0].label and i > 0))
            remove_cache_and(tmp_path / "cache", records[lost[0]].path)
            step = task.train_step

            def recording(model, batch, device):
                seen.extend(batch["index"].tolist())
                marked.extend(batch["unreadable"])
                return step(model, batch, device)

            task.train_step = recording
            return super().fit(task, loader, resume, **kwargs)

    monkeypatch.setattr(apps.retrieval.train, "Engine", BreakingEngine)
    result = train(cfg)
    path = tmp_path / "data"
    assert result.stages["end_to_end"].epochs_run == 2 and seen
    assert lost[0] not in seen and not any(marked)  # never mined, so never replaced in a batch
    lost_path = next(f for f, _ in result.skipped)
    assert len(result.skipped) == 1 and path in lost_path.parents
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        assert [int(row["unreadable"]) for row in csv.DictReader(f)] == [0, 0]
    err = capsys.readouterr().err
    assert err.count(f"warning: {lost_path}: ") == 1
    assert "the method's embedding of the whole training set before each epoch leaves it out" in err
