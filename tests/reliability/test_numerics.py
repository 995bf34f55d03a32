"""Numerics: a NaN or Inf loss (or gradient) stops either trainer with a clear message and leaves the last good
checkpoint as it was; ``--resume`` then continues from it.

The fault is injected into a real run: the task's training step is wrapped so that, once the first epoch's
checkpoint exists, its loss (or only its gradient) turns non-finite. The engine-level case with a toy task is
``tests/engine/test_engine.py::test_nan_loss_stops_and_keeps_last_good_checkpoint``."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import apps.retrieval.train as retrieval_train
import coseg.train as coseg_train
from tests.apps.retrieval_runs import tiny_set
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.reliability.test_bad_inputs import TINY_COSEG, TINY_RETRIEVAL, fails, invoke

FAULTS = {
    "nan loss": lambda loss: loss * float("nan"),
    "inf loss": lambda loss: loss + float("inf"),
    "nan gradient": lambda loss: loss + (loss * 0).sqrt(),  # the loss stays finite; d sqrt(x)/dx at 0 is inf: inf·0
}


def poison_after_first_checkpoint(monkeypatch, task_class: type, run: Path, fault: str) -> dict[str, str]:
    """Wrap ``task_class.train_step``: once ``run/last.pt`` exists, the loss goes through ``FAULTS[fault]``. Returns
    the digests of the checkpoint files as they were when the fault began (filled in then)."""
    step = task_class.train_step
    before: dict[str, str] = {}

    def poisoned(self, model, batch, device):
        terms = step(self, model, batch, device)
        if (run / "last.pt").is_file():
            before.update(before or digests(run))
            terms = {**terms, "loss": FAULTS[fault](terms["loss"])}
        return terms

    monkeypatch.setattr(task_class, "train_step", poisoned)
    return before


def digests(run: Path) -> dict[str, str]:
    return {name: hashlib.sha256((run / name).read_bytes()).hexdigest()
            for name in ("last.safetensors", "best.safetensors", "last.pt")}


def run_train(trainer: str, data: Path, run: Path, epochs: int, *extra) -> list:
    if trainer == "coseg":
        return ["train", "--data", data, "--output", run, "--epochs", epochs, "--val-fraction", 0, *TINY_COSEG,
                *extra]
    return ["retrieval", "train", "--data", data, "--output", run, "--epochs", epochs, *TINY_RETRIEVAL, *extra]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    top = tmp_path_factory.mktemp("numerics")
    return {"coseg": synthetic_set(top / "coseg", groups=2, images=2), "retrieval": tiny_set(top / "retrieval")}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("trainer", ["coseg", "retrieval"])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, datasets, trainer, fault):
    run = tmp_path / "run"
    task = coseg_train.CosegTask if trainer == "coseg" else retrieval_train.RetrievalTask
    before = poison_after_first_checkpoint(monkeypatch, task, run, fault)
    output = fails(*run_train(trainer, datasets[trainer], run, 3))
    assert "non-finite" in output and "at epoch 2" in output
    assert "last.safetensors (epoch 1)" in output and "--resume" in output
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    assert digests(run) == before  # byte for byte the checkpoint of epoch 1
    for name in ("last.safetensors", "best.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(run / name).values())
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())

    monkeypatch.undo()  # the fault is gone (e.g. a lower learning rate): the run resumes from epoch 1
    invoke(*run_train(trainer, datasets[trainer], run, 2, "--resume"))
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2
