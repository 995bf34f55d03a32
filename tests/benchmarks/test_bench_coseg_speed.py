"""benchmarks/coseg_icoseg.py's IS-Triplet share of a train step is measured side by side like its other ratios:
paired rounds after a warm-up, the median of the per-round ratios with every round's (not two separate medians)."""
from __future__ import annotations

import statistics

import pytest

from coseg.config import CosegTrainConfig
from coseg.train import build_model
from tests.benchmarks.scripts import BENCHMARKS, load_script


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings timing.py and checks.py
    return load_script("coseg_icoseg.py")


def test_triplet_share_is_the_median_of_paired_rounds(bench):
    cfg = CosegTrainConfig(weights="none", image_size=32, groups_per_batch=2, images_per_group=2, triplet_pixels=8,
                           members=1, device="cpu")
    out = bench.measure_triplet_share(build_model(cfg), cfg, rounds=3)
    pairs = out["triplet_share_pairs"]
    assert len(pairs) == 3 and "triplet_share_ci95" in out
    assert out["triplet_share"] == pytest.approx(statistics.median(pairs), abs=1e-4)
    assert out["triplet_s"] > 0 and out["train_step_s"] > 0
