"""Audit of coseg_icoseg.py's ``train_vs_plain``: our loop's images/s is the engine's (from the end of its first
step, which holds one-time costs), so the plain loop's must be counted from the end of its first step too; it was
counted over every step, which a slow first step made look slower than ours (the ratio's goal is >= 0.95). Run on a
clock that only the model's forward passes move: the first call of a model takes 10 s, each later one 1 s."""
from __future__ import annotations

import time

import pytest

from coseg.config import CosegTrainConfig
from coseg.engine import config_from_dict
from coseg.models.cosegnet import CosegNet
from coseg.train import build_model
from tests.benchmarks.scripts import BENCHMARKS, load_script
from tests.benchmarks.test_coseg_icoseg import icoseg_like


def test_both_loops_are_timed_from_the_end_of_their_first_step(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings timing.py and checks.py
    bench = load_script("coseg_icoseg.py")
    data = icoseg_like(tmp_path / "icoseg")
    cfg = config_from_dict(CosegTrainConfig, {
        "data": str(data), "layout": "icoseg", "output": str(tmp_path / "run"), "train_split": "train30",
        "weights": "none", "image_size": 64, "embedding_dim": 8, "group_levels": 1, "groups_per_batch": 2,
        "images_per_group": 2, "triplet_pixels": 8, "augment": False, "device": "cpu"}, "test")
    model_file = tmp_path / "model.safetensors"
    build_model(cfg).save(model_file, metadata={"image_size": "64"})
    clock = [0.0]
    forward = CosegNet.forward

    def timed_forward(self, *args, **kwargs):
        clock[0] += 1.0 if getattr(self, "_ran", False) else 10.0
        self._ran = True
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(CosegNet, "forward", timed_forward)
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    speed = bench.measure_train_vs_plain(model_file, cfg, data, steps=3, rounds=1)
    assert speed["ours_images_per_s"] == pytest.approx(4.0)  # 2 steps of 4 images after the first, 1 s each
    assert speed["plain_images_per_s"] == pytest.approx(4.0) and speed["train_vs_plain"] == pytest.approx(1.0)
