"""A group of PNG photos (no JPEG beside them) in an SBCoseg data set: the layout takes each PNG for a mask without
its image, so ``coseg predict`` does not segment them; it lists each as skipped, saying why and what to do, instead
of leaving them out without a word. Ground-truth masks that merely lack their image elsewhere are no input of predict
and are not listed."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import torch

from coseg.data import make_synthetic_coseg
from coseg.predict import predict_folder
from tests.coseg.pipeline_fixtures import ConstantModel

CPU = torch.device("cpu")


def test_png_photos_in_an_sbcoseg_data_set_are_listed_not_silently_left_out(tmp_path):
    root = make_synthetic_coseg(tmp_path / "SBCoseg", num_groups=5, images_per_group=2, size=32, layout="sbcoseg")
    photos = root / "ECFB" / "my photos"
    photos.mkdir()
    for i in range(2):
        cv2.imwrite(str(photos / f"photo{i}.png"), np.full((20, 30, 3), 60 * i, np.uint8))
    report = predict_folder(ConstantModel(0.8), 32, root, tmp_path / "out", CPU, progress=False)
    assert report.written == 10 and not (tmp_path / "out" / "ECFB" / "my photos").exists()
    assert [(file, reason.split(": ", 2)[0]) for file, reason in report.skipped] == [
        (str(photos / f"photo{i}.png"), "mask without image") for i in range(2)]
    assert all(reason.endswith("to segment PNG photos, predict their folder on its own")
               for _, reason in report.skipped)
    single = predict_folder(ConstantModel(0.8), 32, photos, tmp_path / "photos_out", CPU, progress=False)
    assert single.written == 2 and not single.skipped


def test_a_ground_truth_mask_without_its_image_is_no_skipped_input_of_the_internet_layout(tmp_path):
    root = make_synthetic_coseg(tmp_path / "Internet", num_groups=2, images_per_group=2, size=32, layout="internet")
    truth = root / "Data" / "00-star" / "GroundTruth"
    shutil.copy(truth / "img000.png", truth / "lost.png")
    report = predict_folder(ConstantModel(0.8), 32, root, tmp_path / "out", CPU, progress=False)
    assert report.written == 4 and not report.skipped
