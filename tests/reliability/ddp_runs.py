"""Run under ``torchrun`` by ``test_many_processes.py``: both trainers in one process group, each twice — 2 epochs
recording what every rank trains on and which rank writes checkpoints; then 2 epochs stopped on all ranks at the
first step of epoch 2 (as if killed) and resumed.

Usage: ``torchrun --nproc_per_node 2 ddp_runs.py OUT COSEG_DATA RETRIEVAL_DATA``. Writes ``OUT/<trainer>/whole``,
``OUT/<trainer>/cut`` (run folders) and ``OUT/<trainer>/rank<r>.json``: {"batches": the dataset indices of each
training batch of the 2-epoch run, in order; "losses": each step's loss; "moved": before each step, the largest
change of a weight since the step before (0 at the first); "saves": the epochs whose checkpoints this rank
wrote}."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import apps.retrieval.train as retrieval_train
import coseg.train as coseg_train
from coseg.config import CosegTrainConfig
from coseg.engine import Engine, distributed_run
from tests.apps.retrieval_runs import tiny_config


def coseg_config(data: Path, output: Path, epochs: int) -> CosegTrainConfig:
    """5 groups × 4 images; 1 held out, so 4 groups × 2 chunks of K = 2: 4 batches of P = 2 groups per epoch."""
    return CosegTrainConfig(data=str(data), output=str(output), epochs=epochs, members=1, weights="none",
                            image_size=64,
                            groups_per_batch=2, images_per_group=2, val_fraction=0.2, triplet_pixels=8,
                            device="cpu", quiet=True)


def retrieval_config(data: Path, output: Path, epochs: int):
    """4 training classes × 4 images (2 held out): 4 batches of P = 2 classes × K = 2 per epoch."""
    return tiny_config(data, output, epochs=epochs)


TRAINERS = {"coseg": (coseg_train, coseg_train.CosegTask, coseg_config),
            "retrieval": (retrieval_train, retrieval_train.RetrievalTask, retrieval_config)}


def recording(record: dict) -> None:
    """Patch the tasks and the engine so that ``record`` collects batches and checkpoint writes."""
    previous: dict[str, torch.Tensor] = {}  # the weights at the step before
    for _, task, _ in TRAINERS.values():
        step = task.train_step

        def train_step(self, model, batch, device, step=step):
            record["batches"].append(batch["index"].tolist())
            if len(record["batches"]) == record.get("stop_at"):
                raise KeyboardInterrupt("stopped as if killed")
            weights = torch.cat([p.detach().flatten() for p in model.parameters()])
            first = not record["moved"]
            record["moved"].append(0.0 if first else float((weights - previous["weights"]).abs().max()))
            previous["weights"] = weights.clone()
            terms = step(self, model, batch, device)
            record["losses"].append(float(terms["loss"]))
            return terms

        task.train_step = train_step
    save = Engine._save

    def _save(self, epoch, *args, **kwargs):
        record["saves"].append(epoch)
        return save(self, epoch, *args, **kwargs)

    Engine._save = _save


def main(out: Path, data: dict[str, Path]) -> None:
    torch.set_num_threads(1)
    record: dict = {}
    recording(record)
    with distributed_run("cpu") as dist:
        for name, (module, _, config) in TRAINERS.items():
            record.update(batches=[], losses=[], moved=[], saves=[], stop_at=None)
            module.train(config(data[name], out / name / "whole", 2), dist=dist)
            (out / name).mkdir(parents=True, exist_ok=True)
            (out / name / f"rank{dist.rank}.json").write_text(json.dumps(record))
            record.update(batches=[], losses=[], moved=[], stop_at=len(record["batches"]) // 2 + 1)
            try:
                module.train(config(data[name], out / name / "cut", 2), dist=dist)
            except KeyboardInterrupt:
                record["stop_at"] = None
            module.train(config(data[name], out / name / "cut", 2), resume=True, dist=dist)


if __name__ == "__main__":
    main(Path(sys.argv[1]), {"coseg": Path(sys.argv[2]), "retrieval": Path(sys.argv[3])})
