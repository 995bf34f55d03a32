"""The engine under DDP (2 CPU processes, gloo, started with ``spawn``): random streams of their own per rank that
``--resume`` restores rank by rank, replicas that stay equal under a time budget, and buffers (BatchNorm statistics)
equal on every rank after an epoch."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from coseg.engine import DistInfo, Engine
from tests.engine.ddp_toy_run import HalfBatches
from tests.engine.toy import ToyModel, ToyTask

pytestmark = [pytest.mark.ddp, pytest.mark.slow]
WORLD_SIZE = 2


class BatchNormToy(ToyModel):
    """The toy classifier with BatchNorm (running statistics as buffers) and dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


class DrawingTask(ToyTask):
    """The toy task drawing one number from the global torch stream each step (as an augmentation would)."""

    def __init__(self) -> None:
        super().__init__()
        self.draws: list[float] = []

    def train_step(self, model, batch, device):
        self.draws.append(float(torch.rand(())))
        return super().train_step(model, batch, device)


def fit(out: Path, info: DistInfo, epochs: int, resume: bool = False, **engine_options) -> tuple[Engine, DrawingTask]:
    """A run as the trainers start one: every rank seeded alike, then the model, the loader and the engine."""
    torch.manual_seed(0)
    task = DrawingTask()
    loader = DataLoader(TensorDataset(task.x, task.y), batch_sampler=HalfBatches(len(task.x), info.rank, WORLD_SIZE))
    model = BatchNormToy()
    options = {"lr_schedule": "constant", "warmup": 0.0, **engine_options}
    engine = Engine(model, torch.optim.AdamW(model.parameters(), lr=0.01), out, dist=info, epochs=epochs,
                    select_metric="acc", quiet=True, **options)
    engine.fit(task, loader, resume=resume)
    return engine, task


def state(engine: Engine) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in engine.model.state_dict().items()}


def streams_and_resume(out: Path, info: DistInfo) -> dict:
    whole, whole_task = fit(out / "whole", info, epochs=2)
    _, cut_task = fit(out / "cut", info, epochs=1)
    resumed, resumed_task = fit(out / "cut", info, epochs=2, resume=True)
    if info.is_main:  # a checkpoint written before last.pt held each rank's streams
        old = torch.load(out / "cut" / "last.pt", weights_only=True)
        old.pop("rng_ranks")
        old["epoch"] = 1
        torch.save(old, out / "cut" / "last.pt")
    torch.distributed.barrier()
    _, old_task = fit(out / "cut", info, epochs=2, resume=True)
    return {"whole": whole_task.draws, "cut": cut_task.draws + resumed_task.draws, "old": old_task.draws,
            "whole_state": state(whole), "resumed_state": state(resumed),
            "buffers": {k: v.clone() for k, v in whole.model.named_buffers()}}


def time_budget(out: Path, info: DistInfo) -> dict:
    if info.rank == 1:  # its clock starts later: it would see less of the budget gone, a larger learning rate
        time.sleep(0.3)
    engine, _ = fit(out / "budget", info, epochs=10_000, time_budget_s=1.5, lr_schedule="cosine")
    return {"state": state(engine)}


SCENARIOS = {"streams_and_resume": streams_and_resume, "time_budget": time_budget}


def _process(rank: int, store: str, out: str, scenario: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE)
    try:
        record = SCENARIOS[scenario](Path(out), DistInfo(rank=rank, world_size=WORLD_SIZE))
        torch.save(record, Path(out) / f"{scenario}{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def run(tmp_path: Path, scenario: str) -> list[dict]:
    """Each rank's record of ``scenario``."""
    torch.multiprocessing.start_processes(_process, args=(str(tmp_path / "store"), str(tmp_path), scenario),
                                          nprocs=WORLD_SIZE, start_method="spawn")
    return [torch.load(tmp_path / f"{scenario}{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> list[dict]:
    """Each rank's record of a 2-epoch run, of a run stopped after epoch 1 and resumed, and of a resume from a
    checkpoint without per-rank streams."""
    return run(tmp_path_factory.mktemp("ddp_replicas"), "streams_and_resume")


def test_ranks_draw_their_own_random_numbers_and_resume_restores_each_rank(two_runs):
    ranks = two_runs
    assert ranks[0]["whole"] != ranks[1]["whole"]  # augmentation and dropout differ between ranks
    assert all(len(r["whole"]) == 8 and r["cut"] == r["whole"] for r in ranks)  # resumed: the same draws, rank by rank
    for rank in ranks:
        for key, value in rank["whole_state"].items():
            torch.testing.assert_close(rank["resumed_state"][key], value, rtol=0, atol=0, msg=key)
            torch.testing.assert_close(ranks[0]["whole_state"][key], value, rtol=0, atol=0, msg=key)  # one model
    assert ranks[0]["old"] != ranks[1]["old"]  # resumed from a checkpoint with one stream for all ranks


def test_replicas_stay_equal_under_a_time_budget(tmp_path):
    ranks = run(tmp_path, "time_budget")
    for key, value in ranks[0]["state"].items():
        torch.testing.assert_close(ranks[1]["state"][key], value, rtol=0, atol=0, msg=key)


def test_every_rank_holds_rank_0s_buffers_after_an_epoch(two_runs):
    ranks = two_runs
    assert ranks[0]["buffers"].keys() == ranks[1]["buffers"].keys() and ranks[0]["buffers"]
    for key, value in ranks[0]["buffers"].items():
        torch.testing.assert_close(ranks[1]["buffers"][key], value, rtol=0, atol=0, msg=key)
