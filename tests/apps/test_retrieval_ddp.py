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
# SoftTriple has a non-zero loss on any batch, so the half batch of each process always trains.
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
