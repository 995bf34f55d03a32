"""`coseg train` whose validation groups have only empty ground-truth masks (Internet's noise images): J is undefined
there, so no epoch is chosen on it and best.safetensors is the last epoch's model. The run said nothing of it: it
named its validation groups and printed no validation J, as if the best epoch had been chosen on them."""
from __future__ import annotations

import cv2
import numpy as np

from tests.coseg.pipeline_fixtures import synthetic_set
from tests.coseg.test_train_run import TINY, coseg
from tests.reliability.test_bad_inputs import without_share

WARNING = "warning: every validation mask is empty, so validation has no J to choose the best epoch on"


def test_validation_on_empty_masks_only_is_told(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    blank = sorted((data / "ground_truth").iterdir())[-1]
    for mask in blank.iterdir():
        cv2.imwrite(str(mask), np.zeros(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).shape, np.uint8))
    code, output = coseg("train", "--data", data, "--output", tmp_path / "run", "--epochs", 1, *without_share(TINY),
                         "--val-groups", blank.name)
    assert code == 0, output
    assert WARNING in output and "best validation J" not in output
    code, output = coseg("train", "--data", data, "--output", tmp_path / "other", "--epochs", 1, *without_share(TINY),
                         "--val-groups", sorted((data / "ground_truth").iterdir())[0].name)
    assert code == 0 and WARNING not in output and "best validation J" in output, output
