import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def run(out: Path, nproc: int, epochs: int, resume: bool = False) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(ROOT / "tests" / "engine" / "ddp_toy_run.py"), str(out), str(epochs)] + (["resume"] if resume else [])
    if nproc == 1:
        cmd = [sys.executable, str(ROOT / "tests" / "engine" / "ddp_toy_run.py"), str(out), str(epochs)] + (
            ["resume"] if resume else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.ddp
@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    run(tmp_path / "one", 1, epochs=3)
    run(tmp_path / "two", 2, epochs=3)
    one = torch.load(tmp_path / "one" / "final_weights.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "final_weights.pt", weights_only=True)
    for k in one:
        torch.testing.assert_close(one[k], two[k], rtol=1e-5, atol=1e-6)
    rows_one = list(csv.DictReader(open(tmp_path / "one" / "log.csv")))
    rows_two = list(csv.DictReader(open(tmp_path / "two" / "log.csv")))
    assert len(rows_two) == 3  # written once (rank 0), one row per epoch
    for a, b in zip(rows_one, rows_two):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), rel=1e-4)
        assert float(a["val_acc"]) == pytest.approx(float(b["val_acc"]))


@pytest.mark.ddp
@pytest.mark.slow
def test_ddp_resume_continues(tmp_path):
    run(tmp_path / "full", 2, epochs=4)
    run(tmp_path / "cut", 2, epochs=2)
    run(tmp_path / "cut", 2, epochs=4, resume=True)
    a = torch.load(tmp_path / "full" / "final_weights.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "final_weights.pt", weights_only=True)
    for k in a:  # constant lr: stopping after epoch 2 and resuming is the same schedule
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
