"""The smart_mining sampler mines each batch with the offset the adaptive controller left after the step before it:
with ``--workers`` the DataLoader drew batches ahead of the steps (workers × prefetch), under an older offset, so the
weights depended on ``--workers`` (audit s17). Its training batches are now drawn in the main process, in step."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

from apps.retrieval.components import build_components
from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.learner import RetrievalLearner
from apps.retrieval.model import create_retrieval_model
from apps.retrieval.train import EpochBatches, train, train_loader
from tests.apps.retrieval_runs import BACKBONE, tiny_config, tiny_set

# a large gain moves the offset at every step, so that a batch mined under an older offset differs
SMART = dict(mode="end_to_end", loss="global", sampler="smart_mining", target_active=0.9, controller_gain=0.5)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_set(tmp_path_factory.mktemp("smart") / "data")


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "last.safetensors")


def offsets(run: Path) -> list[str]:
    with open(run / "log.csv", newline="") as f:
        return [row["train_offset"] for row in csv.DictReader(f)]


def assert_same_run(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert offsets(a) == offsets(b)


def test_workers_do_not_change_what_smart_mining_trains(data: Path, tmp_path: Path) -> None:
    for workers in (0, 2):
        train(tiny_config(data, tmp_path / f"w{workers}", epochs=1, workers=workers, **SMART))
    assert float(offsets(tmp_path / "w0")[0]) != 0  # the epoch's mean offset: it moved
    assert_same_run(tmp_path / "w0", tmp_path / "w2")


class Killed(Exception):
    """Stands for a kill after the first epoch's checkpoint."""


def test_a_run_resumed_with_other_workers_equals_the_uninterrupted_run(data: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    train(tiny_config(data, tmp_path / "full", epochs=2, workers=0, **SMART))
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        original = EpochBatches.set_epoch

        def set_epoch(self: EpochBatches, epoch: int) -> None:
            if epoch == 2:
                raise Killed
            original(self, epoch)

        patch.setattr(EpochBatches, "set_epoch", set_epoch)
        with pytest.raises(Killed):
            train(tiny_config(data, run, epochs=2, workers=0, **SMART))
    train(tiny_config(data, run, epochs=2, workers=1, **SMART), resume=True)  # --workers may change on resume
    assert_same_run(tmp_path / "full", run)


@pytest.mark.parametrize("sampler, loss, workers", [("smart_mining", "global", 0), ("pk", "triplet_margin", 2),
                                                    ("class_representative", "triplet_margin", 2)])
def test_only_a_sampler_the_steps_steer_reads_its_batches_in_the_main_process(sampler: str, loss: str,
                                                                              workers: int) -> None:
    cfg = RetrievalTrainConfig(loss=loss, sampler=sampler, classes_per_batch=2, samples_per_class=3, workers=2)
    labels = torch.arange(4).repeat_interleave(3)
    parts = build_components(cfg, labels, 4, embedding_dim=8)
    learner = RetrievalLearner(create_retrieval_model(BACKBONE, weights=None, embedding_dim=8), parts, cfg.loss)
    loader = train_loader(TensorDataset(labels), learner, parts.sampler, labels, lambda: None, cfg,
                          torch.device("cpu"))
    assert loader.num_workers == workers
