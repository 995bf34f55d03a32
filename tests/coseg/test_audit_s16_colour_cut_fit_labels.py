"""The colour cut's fit, on images shrunk to ``max_fit_pixels``, takes each shrunk pixel's label from the centre of
the area its colour is averaged over. Was: from the area's top-left corner (``INTER_NEAREST``), a shift of about
half the shrink factor between labels and colours."""
from __future__ import annotations

import cv2
import numpy as np

from coseg.models import GroupColourCut


def test_shrunk_labels_come_from_the_centre_of_each_area(monkeypatch):
    cut = GroupColourCut(max_fit_pixels=9)
    assert cut.fit_shape(1, 9, 9) == (3, 3)  # a shrink by 3
    labels = np.full((1, 9, 9), cv2.GC_BGD, np.uint8)
    labels[0, 1::3, 1] = cv2.GC_FGD  # the centres of the first column of 3 × 3 areas
    pixels = np.random.default_rng(0).integers(0, 256, (1, 9, 9, 3), dtype=np.uint8)
    given = []
    monkeypatch.setattr(cv2, "grabCut", lambda image, mask, *args: given.append(mask.copy()))
    cut.fit_selected(pixels, labels)
    expected = np.full((3, 3), cv2.GC_BGD, np.uint8)
    expected[:, 0] = cv2.GC_FGD
    assert len(given) == 1 and np.array_equal(given[0], expected)
