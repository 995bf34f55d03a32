"""benchmarks/coseg_icoseg.py's edge filter and colour cut shares of the group inference are timed in the same
alternating rounds as that inference: each the median of its rounds' ratios, with their spread (not a ratio of two
separately measured medians). A tiny untrained model on a generated set: no speed is measured."""
from __future__ import annotations

import statistics

import pytest

from coseg.config import CosegTrainConfig
from coseg.data import find_samples, make_synthetic_coseg
from coseg.train import build_model
from tests.benchmarks.scripts import BENCHMARKS, load_script


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings timing.py and checks.py
    return load_script("coseg_icoseg.py")


def test_edge_filter_and_colour_cut_shares_are_medians_of_paired_rounds(bench, tmp_path):
    cfg = CosegTrainConfig(weights="none", image_size=32, members=1, device="cpu")
    model_path = tmp_path / "best.safetensors"
    build_model(cfg).save(model_path)
    make_synthetic_coseg(tmp_path / "icoseg", num_groups=2, images_per_group=2, size=32, layout="icoseg")
    samples = find_samples(tmp_path / "icoseg", "icoseg").samples
    out = bench.measure_predict_vs_forward(model_path, 32, samples, rounds=6)
    for key in ("edge_filter_share", "colour_cut_share", "predict_vs_forward"):
        pairs = out[f"{key}_pairs"]
        assert len(pairs) == 6 and len(out[f"{key}_ci95"]) == 2, key
        assert out[key] == pytest.approx(statistics.median(pairs), abs=1e-4), key
