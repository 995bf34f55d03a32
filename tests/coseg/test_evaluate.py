import csv
import json
import math

import numpy as np
import pytest
import torch

from coseg.data import find_samples, read_mask
from coseg.evaluate import evaluate_samples, write_evaluation
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set


def test_scores_at_ground_truth_resolution(tmp_path):
    root = odd_sized_set(tmp_path / "data")
    scan = find_samples(root, "icoseg")
    ev = evaluate_samples(ConstantModel(0.9), scan.samples, 64, torch.device("cpu"), progress=False)
    # predicting all foreground: P = J = foreground share of each original-size mask
    per_group = {}
    for s in scan.samples:
        gt = read_mask(s.mask)
        per_group.setdefault(s.group, []).append(gt.mean())
    expected = np.mean([np.mean(v) for v in per_group.values()]) * 100
    assert ev.summary["J"] == pytest.approx(expected, rel=1e-6)
    assert ev.summary["P"] == pytest.approx(expected, rel=1e-6)
    assert ev.summary["images"] == 3 and ev.summary["per_group"]["g1"]["images"] == 1

    write_evaluation(ev, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary["per_group"]) == {"g0", "g1"} and summary["J"] == pytest.approx(expected, abs=1e-3)
    rows = list(csv.DictReader(open(tmp_path / "out" / "per_image.csv")))
    assert len(rows) == 3 and {"group", "image", "P", "J", "empty_gt"} <= set(rows[0])


def test_unreadable_image_is_skipped_and_listed(tmp_path):
    root = odd_sized_set(tmp_path / "data")
    (root / "images" / "g0" / "im0.jpg").write_bytes(b"not a jpeg")
    scan = find_samples(root, "icoseg")
    ev = evaluate_samples(ConstantModel(0.1), scan.samples, 64, torch.device("cpu"), progress=False)
    assert ev.summary["images"] == 2 and len(ev.skipped) == 1
    assert "im0.jpg" in ev.skipped[0][1]
    assert ev.summary["J"] == 0.0  # predicting background everywhere
    assert math.isclose(ev.summary["skipped"], 1)
