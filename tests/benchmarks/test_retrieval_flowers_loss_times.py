"""benchmarks/retrieval_flowers.py --loss-times: every trained method's loss s/epoch, without training (a smoke test
on a generated class-folder set; the timings themselves are the benchmark's business, not a test's)."""
from __future__ import annotations

import json
import math

import pytest

from tests.apps.retrieval_files import write_class_folders
from tests.benchmarks.scripts import BENCHMARKS, load_script

CLASSES = [f"{i:02d}_flower" for i in range(10)]


@pytest.mark.slow
def test_loss_times_cover_every_trained_method(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling timing.py
    bench = load_script("retrieval_flowers.py")
    data = write_class_folders(tmp_path / "flowers", CLASSES, per_class=8,
                               splits={"train": CLASSES[:8], "test": CLASSES[8:]})
    out = tmp_path / "loss_times.json"
    bench.main(["--data", str(data), "--minutes", "1", "--out", str(out), "--loss-times", "--set", "embedding_dim=16"])
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == set(bench.METHODS) - {bench.FROZEN}
    assert all(math.isfinite(r["loss_seconds_per_epoch"]) and r["loss_seconds_per_epoch"] > 0 and r["dim"] == 16
               for r in rows.values())
    assert all(len(r["vs_upper_bound_pairs"]) == 7 and r["vs_upper_bound_ci95"] is not None for r in rows.values())
