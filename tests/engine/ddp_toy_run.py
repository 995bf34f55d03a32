"""Run by tests under ``torchrun``: the toy task trained with the engine, each rank taking half of every batch."""
from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from coseg.engine import DistInfo, Engine, distributed_run
from tests.engine.toy import ToyModel, ToyTask


class HalfBatches:
    """Fixed global batches of 16 (a seeded permutation per epoch); rank r keeps its share of each batch."""

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.n, self.rank, self.world_size, self.epoch = n, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.epoch)).tolist()
        for start in range(0, self.n, 16):
            batch = order[start:start + 16]
            share = len(batch) // self.world_size
            yield batch[self.rank * share:(self.rank + 1) * share]

    def __len__(self) -> int:
        return self.n // 16


def fit(out: Path, epochs: int, resume: bool, info: DistInfo) -> weakref.ref:
    """Train as the real trainers do, inside a function; returns a weak reference to the DDP wrapper."""
    torch.manual_seed(0)
    model = ToyModel()
    model.net[2].p = 0.0  # no dropout: rank-local randomness would make the two set-ups differ
    task = ToyTask()
    loader = DataLoader(TensorDataset(task.x, task.y),
                        batch_sampler=HalfBatches(len(task.x), info.rank, info.world_size))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    engine = Engine(model, opt, out, dist=info, epochs=epochs, select_metric="acc", quiet=True, lr_schedule="constant",
                    warmup=0.0)
    engine.fit(task, loader, resume=resume)
    if info.is_main:
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, out / "final_weights.pt")
    return weakref.ref(engine.ddp_model)


def main(out: Path, epochs: int, resume: bool) -> None:
    gc.disable()  # reference cycles then stay until an explicit collection: the worst case, every time
    with distributed_run("cpu") as info:
        wrapper = fit(out, epochs, resume, info)
    # A wrapper still alive here would hold gloo's threads until interpreter shutdown, where they can abort
    # the process ("terminate called without an active exception").
    if info.distributed and wrapper() is not None:
        sys.exit("the DDP wrapper outlived the process group")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), len(sys.argv) > 3 and sys.argv[3] == "resume")
