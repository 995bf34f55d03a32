"""Many processes: both trainers under ``torchrun --standalone`` (gloo, 2 processes, CPU).

Per epoch the ranks together train on exactly the samples one process would (each sample as many times as the
single-process batch sampler draws it, at least once), only rank 0 writes checkpoints and the log, and a DDP run
stopped in epoch 2 and resumed ends with exactly the weights of an uninterrupted DDP run. One ``torchrun``
launch runs everything (``tests/reliability/ddp_runs.py``). Also in the suite: the engine with a toy task
(``tests/engine/test_engine_ddp.py``: 2 processes match 1) and ``coseg train`` through the CLI under torchrun
(``tests/coseg/test_train_ddp.py``)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from apps.retrieval.train import load_training_data
from coseg.data import CosegDataset, find_samples
from coseg.selection import samples_of
from coseg.train import split_train_val
from metric.samplers import PKBatchSampler
from tests.apps.retrieval_runs import tiny_set
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.reliability.ddp_runs import coseg_config, retrieval_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ddp, pytest.mark.slow]
EPOCHS = 2


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> dict:
    top = tmp_path_factory.mktemp("ddp")
    data = {"coseg": synthetic_set(top / "coseg", groups=5, images=4), "retrieval": tiny_set(top / "retrieval")}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(ROOT / "tests" / "reliability" / "ddp_runs.py"), str(top / "out"),
                           str(data["coseg"]), str(data["retrieval"])],
                          env=env, capture_output=True, text=True, timeout=600, cwd=top)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"out": top / "out", "data": data}


def training_labels(trainer: str, data: Path, out: Path) -> tuple[torch.Tensor, int, int, int]:
    """(labels of the training set as the trainer indexes it, P, K, seed)."""
    if trainer == "coseg":
        cfg = coseg_config(data, out, EPOCHS)
        scan = find_samples(data, cfg.layout)
        train_groups, _ = split_train_val(cfg, scan)
        labels = CosegDataset(samples_of(scan, train_groups), cfg.image_size).group_ids
        return labels, cfg.groups_per_batch, cfg.images_per_group, cfg.seed
    cfg = retrieval_config(data, out, EPOCHS)
    return load_training_data(cfg).train.labels, cfg.classes_per_batch, cfg.samples_per_class, cfg.seed


@pytest.mark.parametrize("trainer", ["coseg", "retrieval"])
def test_each_sample_is_trained_on_as_often_as_in_one_process(ddp, trainer):
    labels, p, k, seed = training_labels(trainer, ddp["data"][trainer], ddp["out"])
    ranks = [json.loads((ddp["out"] / trainer / f"rank{r}.json").read_text())["batches"] for r in range(2)]
    single = PKBatchSampler(labels, p, k, seed=seed)
    steps = len(single)
    assert steps >= 2 and all(len(batches) == EPOCHS * steps for batches in ranks)
    for epoch in range(1, EPOCHS + 1):
        single.set_epoch(epoch)
        expected = Counter(i for batch in single for i in batch)
        assert set(expected) == set(range(len(labels)))  # every sample at least once
        seen = Counter()
        for batches in ranks:
            for batch in batches[(epoch - 1) * steps:epoch * steps]:
                assert len(batch) == p * k // 2  # half of each global batch
                seen.update(batch)
        assert seen == expected, f"epoch {epoch}"


def test_every_retrieval_step_trains_on_the_whole_batch(ddp):
    """Each process computes the retrieval loss of the whole batch, not of its share: with P = 2 and 2 processes a
    share is a single class, whose triplets have no negative (a loss of 0 at every step, that moves no weight but by
    decay). The whole batch's loss may be 0 at a step too (4 images, none of their triplets inside the margin)."""
    ranks = [json.loads((ddp["out"] / "retrieval" / f"rank{r}.json").read_text()) for r in range(2)]
    losses = ranks[0]["losses"]
    assert losses == ranks[1]["losses"] and sum(loss > 0 for loss in losses) >= len(losses) * 3 // 4, losses
    assert max(ranks[0]["moved"]) > 1e-5  # Adam's steps are ~lr = 1e-3; weight decay alone moves ~1e-7


@pytest.mark.parametrize("trainer", ["coseg", "retrieval"])
def test_only_rank_0_writes_checkpoints_and_the_log(ddp, trainer):
    saves = [json.loads((ddp["out"] / trainer / f"rank{r}.json").read_text())["saves"] for r in range(2)]
    assert saves == [list(range(1, EPOCHS + 1)), []]
    run = ddp["out"] / trainer / "whole"
    assert [r["epoch"] for r in csv.DictReader(open(run / "log.csv"))] == ["1", "2"]
    assert torch.load(run / "last.pt", weights_only=True)["world_size"] == 2
    assert not list(run.glob(".*"))


@pytest.mark.parametrize("trainer", ["coseg", "retrieval"])
def test_resumed_ddp_run_equals_an_uninterrupted_one(ddp, trainer):
    whole, cut = ddp["out"] / trainer / "whole", ddp["out"] / trainer / "cut"
    assert torch.load(cut / "last.pt", weights_only=True)["epoch"] == EPOCHS
    for name in ("last.safetensors", "best.safetensors"):
        a, b = load_file(whole / name), load_file(cut / name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}: {key}")
    rows = [list(csv.DictReader(open(run / "log.csv"))) for run in (whole, cut)]
    assert [[v for c, v in r.items() if c.startswith(("train_", "val_"))] for r in rows[0]] == \
           [[v for c, v in r.items() if c.startswith(("train_", "val_"))] for r in rows[1]]
