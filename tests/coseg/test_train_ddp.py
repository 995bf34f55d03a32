import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.coseg.pipeline_fixtures import synthetic_set

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.ddp
@pytest.mark.slow
def test_coseg_train_under_torchrun_two_processes(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=4, images=4)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": str(data), "output": str(tmp_path / "run"), "epochs": 2, "weights": "none",
                                   "image_size": 64, "groups_per_batch": 2, "images_per_group": 2,
                                   "val_fraction": 0.25, "triplet_pixels": 8, "device": "cpu", "quiet": True}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "apps.cli",
           "train", "--config", str(cfg)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]  # one writer (rank 0), one row per epoch
    for name in ("best.safetensors", "last.safetensors", "last.pt", "config.yaml"):
        assert (tmp_path / "run" / name).is_file()
    # 3 training groups × 4 images, P = 2 groups × K = 2 split over 2 ranks: 4 images per global batch
    assert float(rows[0]["images_per_s"]) > 0

    proc = subprocess.run(cmd[:-2] + ["--config", str(cfg), "--epochs", "3", "--resume"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["epoch"] for r in csv.DictReader(open(tmp_path / "run" / "log.csv"))] == ["1", "2", "3"]
