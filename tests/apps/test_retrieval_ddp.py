"""``coseg retrieval train`` under torchrun: 2 CPU processes (gloo, ``--standalone``), head stage and fine-tuning
stage."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from apps.retrieval.model import load_retrieval_model
from tests.apps.retrieval_runs import tiny_set

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 2
# SoftTriple has a non-zero loss on any batch, so both stages always train.
OPTIONS = ["--backbone", "test_efficientnet", "--weights", "none", "--image-size", "32", "--embedding-dim", "8",
           "--classes-per-batch", "4", "--samples-per-class", "2", "--loss", "soft_triple", "--val-fraction", "0.34",
           "--epochs", str(EPOCHS), "--finetune-epochs", "1", "--device", "cpu", "--quiet"]


def train_run(data: Path, output: Path, processes: int) -> subprocess.CompletedProcess:
    """``coseg retrieval train`` on ``data`` into ``output`` under torchrun with ``processes`` processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "apps.cli", "retrieval", "train", "--data", str(data), "--output", str(output), *OPTIONS]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def log_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.ddp
@pytest.mark.slow
def test_torchrun_two_processes_train_both_stages(tmp_path):
    data = tiny_set(tmp_path / "data", per_class=8)
    two = train_run(data, tmp_path / "two", 2)
    run = tmp_path / "two"
    assert two.stdout.count("outputs:") == 1  # rank 0 alone reports
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == EPOCHS
    head, finetune = log_rows(run / "log.csv"), log_rows(run / "finetune" / "log.csv")
    assert [int(r["epoch"]) for r in head] == list(range(1, EPOCHS + 1)) and len(finetune) == 1  # written once
    for row in head + finetune:
        assert float(row["train_loss"]) >= 0 and 0 <= float(row["val_MAP@R"]) <= 100
    head_model = load_retrieval_model(run / "last.safetensors")
    tuned = load_retrieval_model(run / "finetune" / "last.safetensors")
    assert load_retrieval_model(run / "best.safetensors").embedding_dim == tuned.embedding_dim == 8
    # the fine-tuning stage trained the backbone under DDP; the head stage had left it as it was
    moved = [not torch.equal(a, b) for a, b in zip(head_model.backbone.parameters(), tuned.backbone.parameters())]
    assert any(moved)


def _smart_mining_offsets(rank: int, world_size: int, store: str, offsets) -> None:
    """One process of a gloo group: the objective of a smart-mining learner given this rank's share of a batch, one
    triplet, active on rank 0 and not on rank 1; the share of active triplets and the controller's offset go into
    ``offsets[rank]``."""
    from apps.retrieval.components import build_components
    from apps.retrieval.config import RetrievalTrainConfig
    from apps.retrieval.learner import RetrievalLearner
    from coseg.engine import DistInfo

    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        labels = torch.arange(4).repeat_interleave(4)
        cfg = RetrievalTrainConfig(loss="triplet_margin", sampler="smart_mining", classes_per_batch=2,
                                   samples_per_class=3, embedding_dim=2, target_active=0.5, controller_gain=1.0)
        parts = build_components(cfg, labels, 4, rank, world_size)
        learner = RetrievalLearner(torch.nn.Identity(), parts, cfg.loss)  # type: ignore[arg-type]
        far = 0.0 if rank == 0 else 10.0  # the negative on top of the anchor (active) or far from it (not)
        embeddings = torch.tensor([[0.0, 0.0], [0.0, 0.0], [far, 0.0]])  # anchor, positive, negative
        logged = learner.objective(embeddings, torch.tensor([0, 0, 1]), DistInfo(rank=rank, world_size=world_size))
        offsets[rank] = (float(logged["active"]), float(learner.hooks[0].controller.offset))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.slow
def test_smart_mining_controller_follows_the_whole_batch_on_every_process(tmp_path):
    context = torch.multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        offsets = manager.dict()
        torch.multiprocessing.start_processes(_smart_mining_offsets, args=(2, str(tmp_path / "store"), offsets),
                                              nprocs=2, start_method="spawn")
        shares = dict(offsets)
    assert shares[0] == shares[1] and shares[0][0] == 0.5  # one active triplet of two, on both processes
