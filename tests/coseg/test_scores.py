import math

import numpy as np
import pytest

from coseg.scores import score_image, summarize


def naive_scores(pred, gt):
    h, w = gt.shape
    same = inter = union = 0
    for y in range(h):
        for x in range(w):
            same += pred[y, x] == gt[y, x]
            inter += pred[y, x] and gt[y, x]
            union += pred[y, x] or gt[y, x]
    return same / (h * w), (inter / union if gt.any() else math.nan)


def test_score_image_matches_naive():
    rng = np.random.default_rng(0)
    for _ in range(20):
        pred = rng.random((7, 9)) > 0.5
        gt = rng.random((7, 9)) > 0.6
        s = score_image(pred, gt)
        p, j = naive_scores(pred, gt)
        assert s.P == pytest.approx(p) and s.J == pytest.approx(j)


def test_empty_ground_truth_policies():
    gt = np.zeros((4, 4), bool)
    pred = np.zeros((4, 4), bool)
    pred[0, 0] = True
    s = score_image(pred, gt, "g", "a")
    assert s.empty_gt and math.isnan(s.J) and s.P == pytest.approx(15 / 16)
    full = np.ones((4, 4), bool)
    t = score_image(full, full, "g", "b")
    assert t.J == 1.0
    ex = summarize([s, t], empty="exclude")
    zero = summarize([s, t], empty="zero")
    assert ex["J"] == pytest.approx(100.0) and zero["J"] == pytest.approx(50.0)
    assert ex["P"] == pytest.approx(100 * (15 / 16 + 1) / 2)
    assert ex["empty_gt_images"] == 1
    with pytest.raises(ValueError, match="empty"):
        summarize([s], empty="bogus")


def test_group_then_mean_over_groups():
    a = np.ones((2, 2), bool)
    b = np.zeros((2, 2), bool)
    b[0, 0] = True
    scores = [score_image(a, a, "g1", "1"), score_image(a, a, "g1", "2"), score_image(b, a, "g2", "3")]
    out = summarize(scores)
    assert out["per_group"]["g1"]["J"] == pytest.approx(100.0)
    assert out["per_group"]["g2"]["J"] == pytest.approx(25.0)
    assert out["J"] == pytest.approx(62.5)  # mean over groups, not over images (which would be 75)
    assert out["per_group"]["g1"]["images"] == 2


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differs"):
        score_image(np.zeros((2, 3), bool), np.zeros((3, 2), bool), name="x.png")
