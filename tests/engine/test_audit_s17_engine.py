"""Audit (s17) of the engine: an error a DataLoader worker raises is told with its own message (was: torch's, the
worker's whole traceback), and a shuffling loader read by workers draws other batches each epoch (was: the same
batches every epoch after the first when training itself draws no random number)."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import coseg.data.cache
import coseg.train
from coseg.config import CosegTrainConfig
from coseg.engine import DistInfo, Engine
from coseg.engine.trainer import worker_error
from coseg.train import train
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.engine.toy import ToyModel, ToyTask

MESSAGE = ("/data/images/a/1.jpg: cannot read file (No such file or directory); and none of the 1 other image(s) of "
           "group 'a' can be read any more to take its place:\n  check that the data set's files are still in place")


class LosingDataset(Dataset):
    """The toy's 64 samples; item 40 raises ``kind(MESSAGE)`` while another error is handled (a chained one)."""

    def __init__(self, task: ToyTask, kind: type[Exception]) -> None:
        self.task, self.kind = task, kind

    def __len__(self) -> int:
        return len(self.task.x)

    def __getitem__(self, i: int):
        if i == 40:
            try:
                raise KeyError("first")
            except KeyError:
                raise self.kind(MESSAGE)  # the worker's traceback holds both
        return self.task.x[i], self.task.y[i]


def engine(run, epochs: int) -> Engine:
    torch.manual_seed(0)
    model = ToyModel()
    model.net[2].p = 0.0  # training draws no random number
    return Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), run, dist=DistInfo(), epochs=epochs,
                  select_metric="acc", quiet=True)


@pytest.mark.parametrize("kind", [ValueError, OSError])
@pytest.mark.parametrize("workers", [0, 1])
def test_an_error_in_a_loader_worker_is_told_with_its_own_message(tmp_path, workers, kind):
    """Was, with workers: "Caught ValueError in DataLoader worker process 0.\\nOriginal Traceback (most recent call
    last):\\n  File ...", which `coseg train --workers 1` showed after "Error:" when a group's images were gone."""
    task = ToyTask()
    loader = DataLoader(LosingDataset(task, kind), batch_size=16, num_workers=workers)
    with pytest.raises(kind) as caught:
        engine(tmp_path, epochs=1).fit(task, loader)
    assert str(caught.value) == MESSAGE
    if workers:  # torch's error, with the worker's traceback, is kept as the cause
        assert "DataLoader worker process 0" in str(caught.value.__cause__)


def test_worker_error_leaves_other_errors_alone():
    assert worker_error(ValueError("Caught ValueError somewhere")) is None
    assert worker_error(ValueError("a", "b")) is None
    text = "Caught DataFileError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
    assert worker_error(RuntimeError(text + "  File x\nDataFileError: gone")) is None  # torch could not rebuild it


class OrderTask(ToyTask):
    """The toy task noting each epoch's first batch."""

    def __init__(self) -> None:
        super().__init__()
        self.firsts: list[list[float]] = []

    def train_step(self, model, batch, device):
        if self.steps % 4 == 0:
            self.firsts.append(batch[0][:, 0].tolist())
        return super().train_step(model, batch, device)


@pytest.mark.parametrize("persistent", [True, False])
def test_a_shuffling_loader_with_workers_draws_other_batches_each_epoch(tmp_path, persistent):
    """Was: the sampler's seed drawn from the global stream as the workers start, which the engine undoes (so that
    persistent workers started by a resumed run draw nothing the uninterrupted run did not): each epoch after the
    first drew the same batches. Workers started anew each epoch give a resumed run the uninterrupted one's batches;
    persistent ones, started in the resumed run's first epoch, do not (their seed is drawn before the sampler's)."""
    def loader(task: ToyTask) -> DataLoader:
        return DataLoader(TensorDataset(task.x, task.y), batch_size=16, shuffle=True, num_workers=1,
                          persistent_workers=persistent)

    task = OrderTask()
    engine(tmp_path / "full", epochs=3).fit(task, loader(task))
    assert len(task.firsts) == 3 and len({tuple(first) for first in task.firsts}) == 3
    if not persistent:
        cut = OrderTask()
        engine(tmp_path / "cut", epochs=2).fit(cut, loader(cut))
        resumed = OrderTask()
        engine(tmp_path / "cut", epochs=3).fit(resumed, loader(resumed), resume=True)
        assert cut.firsts + resumed.firsts == task.firsts


def test_a_training_whose_group_is_lost_tells_the_file_also_with_workers(tmp_path, monkeypatch):
    """`coseg train --workers 1` told the worker's traceback when every image of a group went during the run."""
    data = synthetic_set(tmp_path / "data", groups=3, images=2, size=48)
    monkeypatch.setattr(coseg.data.cache, "MEMORY_SHARE", 0.0)  # read from the disk cache each time
    cfg = CosegTrainConfig(data=str(data), output=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                           members=1, weights="none", image_size=32, groups_per_batch=2, images_per_group=2,
                           triplet_pixels=8, val_fraction=0.34, device="cpu", quiet=True, epochs=1, workers=1)

    class LosingEngine(Engine):
        def fit(self, task, loader, resume=False, **kwargs):  # start-up is over: the files go
            for stored in loader.dataset.cache.cache_dir.glob("*.npz"):
                stored.unlink()
            for sample in loader.dataset.samples:
                sample.image.unlink()
            return super().fit(task, loader, resume, **kwargs)

    monkeypatch.setattr(coseg.train, "Engine", LosingEngine)
    with pytest.raises(ValueError) as caught:
        train(cfg)
    assert str(caught.value).startswith(f"{data}") and "Traceback" not in str(caught.value)
    assert "can be read any more to take its place" in str(caught.value)
