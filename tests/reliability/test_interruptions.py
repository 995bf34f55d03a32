"""Interruptions: ``kill -9`` in the middle of either trainer, of ``coseg predict`` and of ``coseg retrieval export``.

A trainer killed after its first checkpoint resumes with ``--resume`` from that checkpoint and ends, on the CPU
with a fixed seed, with exactly the weights and validation scores of an uninterrupted run. A killed predict or
export leaves no half-written output, and running it again finishes the job without redoing finished work.
(In-process interruptions, by an exception at a chosen step, are in ``tests/engine/test_engine.py`` and
``tests/apps/test_retrieval_export.py``.)"""
from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from apps.retrieval.export import SHARD_DIR
from apps.retrieval.model import create_retrieval_model
from coseg.models import create_model
from tests.apps.retrieval_runs import BACKBONE, tiny_set
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.reliability.test_bad_inputs import TINY_COSEG, TINY_RETRIEVAL, invoke

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def kill_when(args: list, ready, timeout: float = 120.0) -> None:
    """Start ``coseg ARGS`` in a new process and SIGKILL it as soon as ``ready()`` is true; it must not have
    finished by then."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"finished before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the moment to kill never came")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stderr.close()


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of atomic writes (``.<name>.tmp-*``) under ``folder``."""
    return list(folder.rglob(".*.tmp-*"))


def masks(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.png") if not p.name.startswith(".")]


def assert_same_run(a: Path, b: Path) -> None:
    for name in ("last.safetensors", "best.safetensors"):
        first, second = load_file(a / name), load_file(b / name)
        assert first.keys() == second.keys()
        for key in first:
            torch.testing.assert_close(first[key], second[key], rtol=0, atol=0, msg=f"{name}: {key}")
    rows_a, rows_b = (list(csv.DictReader(open(run / "log.csv"))) for run in (a, b))
    assert [r["epoch"] for r in rows_a] == [r["epoch"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        assert {k: v for k, v in ra.items() if k.startswith(("train_", "val_", "lr"))} == \
               {k: v for k, v in rb.items() if k.startswith(("train_", "val_", "lr"))}


@pytest.mark.parametrize("trainer", ["coseg", "retrieval"])
def test_kill_9_during_training_then_resume_equals_an_uninterrupted_run(tmp_path, trainer):
    if trainer == "coseg":
        data = synthetic_set(tmp_path / "data", groups=4, images=4)
        args = ["train", "--data", data, "--epochs", 4, "--val-groups", "03-cross", *TINY_COSEG]
    else:
        data = tiny_set(tmp_path / "data")
        args = ["retrieval", "train", "--data", data, "--epochs", 12, *TINY_RETRIEVAL, "--threads", 1]
    invoke(*args, "--output", tmp_path / "whole")
    cut = tmp_path / "cut"
    kill_when([*args, "--output", cut], lambda: (cut / "last.pt").is_file())
    killed_at = torch.load(cut / "last.pt", weights_only=True)["epoch"]
    epochs = int(args[args.index("--epochs") + 1])
    assert 1 <= killed_at < epochs
    for model in cut.glob("[!.]*.safetensors"):  # not the temporary file of a write the kill stopped
        assert load_file(model)  # complete files only
    invoke(*args, "--output", cut, "--resume")
    assert_same_run(tmp_path / "whole", cut)
    assert not leftovers(cut)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """80 images of 96 × 128 pixels in 4 groups."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(80):
        path = root / f"group{i % 4}" / f"photo{i:03d}.jpg"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    return root


def test_kill_9_during_predict_leaves_whole_masks_and_a_rerun_finishes(tmp_path, photos):
    checkpoint = tmp_path / "model.safetensors"
    create_model("unet", encoder="tu-tf_efficientnet_lite0", weights=None, embedding_dim=8,
                 group_levels=1).save(checkpoint, metadata={"image_size": "128"})
    out = tmp_path / "masks"
    kill_when(["predict", "--checkpoint", checkpoint, "--input", photos, "--output", out, "--batch-size", 4,
               "--single-image", "--device", "cpu", "--quiet"], lambda: len(masks(out)) >= 3)
    done = {p: p.stat().st_mtime_ns for p in masks(out)}
    assert 3 <= len(done) < 80
    for mask in done:  # every mask there is complete: it decodes, at its image's size, 0/255
        pixels = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
        assert pixels is not None and pixels.shape == (96, 128) and set(np.unique(pixels)) <= {0, 255}
    output = invoke("predict", "--checkpoint", checkpoint, "--input", photos, "--output", out, "--batch-size", 4,
                    "--single-image", "--device", "cpu", "--quiet")
    assert re.search(rf"wrote {80 - len(done)} mask\(s\), kept {len(done)} already done", output), output
    assert len(masks(out)) == 80 and not leftovers(out)
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished masks were not written again


def test_kill_9_during_export_leaves_no_output_and_a_rerun_reuses_finished_shards(tmp_path, photos):
    checkpoint = tmp_path / "model.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(checkpoint,
                                                                                  metadata={"image_size": "96"})
    out, args = tmp_path / "export", ["--checkpoint", checkpoint, "--input", photos, "--shard-size", 8,
                                      "--batch-size", 4, "--device", "cpu", "--quiet"]
    kill_when(["retrieval", "export", *args, "--output", out],
              lambda: len(list((out / SHARD_DIR).glob("0*.npz"))) >= 2)
    shards = list((out / SHARD_DIR).glob("0*.npz"))
    assert 2 <= len(shards) < 10
    assert not any((out / name).exists() for name in ("embeddings.npy", "manifest.csv", "index.faiss", "export.json"))
    for shard in shards:
        with np.load(shard, allow_pickle=False) as stored:
            assert stored["embeddings"].shape[1] == 8
    output = invoke("retrieval", "export", *args, "--output", out)
    assert f"({len(shards)} of 10 shard(s) from an earlier run)" in output
    invoke("retrieval", "export", *args, "--output", tmp_path / "whole")
    assert np.array_equal(np.load(out / "embeddings.npy"), np.load(tmp_path / "whole" / "embeddings.npy"))
    assert (out / "manifest.csv").read_bytes() == (tmp_path / "whole" / "manifest.csv").read_bytes()
    assert not leftovers(out) and not (out / SHARD_DIR).exists()
