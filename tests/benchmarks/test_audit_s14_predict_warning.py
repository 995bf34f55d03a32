"""benchmarks/coseg_icoseg.py's speed probe runs ``predict`` once per timed round: the warning that every mask it
predicted is empty is printed once for the whole measurement, not once per round. A model predicting background
everywhere on a generated set: no speed is measured."""
from __future__ import annotations

import pytest

from coseg.data import find_samples, make_synthetic_coseg
from tests.benchmarks.scripts import BENCHMARKS, load_script
from tests.coseg.pipeline_fixtures import ConstantModel


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings timing.py and checks.py
    return load_script("coseg_icoseg.py")


def test_the_empty_masks_warning_is_printed_once_for_all_rounds(bench, tmp_path, monkeypatch, capsys):
    # was: "warning: all 4 mask(s) predicted are empty ..." once per round (5 lines for 5 rounds)
    monkeypatch.setattr(bench, "load_for_inference", lambda path, device, size: (ConstantModel(0.1), size))
    make_synthetic_coseg(tmp_path / "icoseg", num_groups=2, images_per_group=2, size=32, layout="icoseg")
    samples = find_samples(tmp_path / "icoseg", "icoseg").samples
    bench.measure_predict_vs_forward(tmp_path / "unused.safetensors", 32, samples, rounds=5)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "predicted are empty" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: all 4 mask(s) predicted are empty"), warnings
