import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.coseg.pipeline_fixtures import synthetic_set

ROOT = Path(__file__).resolve().parents[2]


def torchrun_train(tmp_path: Path, **settings) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``coseg train`` on 4 synthetic groups under torchrun with 2 CPU processes; the command, to run it again."""
    data = synthetic_set(tmp_path / "data", groups=4, images=4)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": str(data), "output": str(tmp_path / "run"), "epochs": 2, "weights": "none",
                                   "image_size": 64, "groups_per_batch": 2, "images_per_group": 2,
                                   "val_fraction": 0.25, "triplet_pixels": 8, "device": "cpu", "quiet": True,
                                   **settings}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "apps.cli",
           "train", "--config", str(cfg)]
    return run(cmd, tmp_path), cmd


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.ddp
@pytest.mark.slow
def test_coseg_train_under_torchrun_two_processes(tmp_path):
    proc, cmd = torchrun_train(tmp_path, members=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # one writer (rank 0), one row per epoch
    for name in ("best.safetensors", "last.safetensors", "last.pt", "config.yaml"):
        assert (tmp_path / "run" / name).is_file()
    # 3 training groups × 4 images, P = 2 groups × K = 2 split over 2 ranks: 4 images per global batch
    assert float(rows[0]["images_per_s"]) > 0
    assert proc.stdout.count("outputs:") == 1 and proc.stdout.count("trained 2 epoch(s)") == 1  # one process tells

    proc = run(cmd + ["--epochs", "3", "--resume"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["epoch"] for r in csv.DictReader(open(tmp_path / "run" / "log.csv"))] == ["1", "2", "3"]


@pytest.mark.ddp
@pytest.mark.slow
def test_coseg_ensemble_under_torchrun_two_processes(tmp_path):
    from coseg.models import CosegEnsemble, checkpoint_metadata, load_model

    proc, _ = torchrun_train(tmp_path, members=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ensemble of 2 models") == 1
    for i in range(2):  # each member one epoch, its log written once (rank 0)
        assert [r["epoch"] for r in csv.DictReader(open(tmp_path / "run" / f"member{i}" / "log.csv"))] == ["1"]
    best = load_model(tmp_path / "run" / "best.safetensors")
    assert isinstance(best, CosegEnsemble) and len(best.members) == 2
    assert "val_J" in checkpoint_metadata(tmp_path / "run" / "best.safetensors")
