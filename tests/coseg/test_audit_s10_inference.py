"""Audit s10: group inference through ``predict_dataset`` on datasets and groups a user may give it."""
import cv2
import numpy as np
import pytest
import torch

from coseg.data import CosegDataset, find_samples, make_synthetic_coseg
from coseg.inference import ImageFileDataset, group_ids, predict_dataset
from coseg.models import GroupColourCut, create_model
from tests.coseg.pipeline_fixtures import ConstantModel

CPU = torch.device("cpu")


def test_a_streamed_group_of_a_dataset_without_cut_images_is_cut_on_its_images(tmp_path):
    scan = find_samples(make_synthetic_coseg(tmp_path / "data", num_groups=1, images_per_group=4, size=40))
    dataset = CosegDataset(scan.samples, 32)  # gives no "cut_image": the cut runs on "image"
    torch.manual_seed(0)
    model = create_model("unet", encoder="tu-resnet18", weights=None, embedding_dim=4, group_levels=1).eval()
    groups = group_ids(dataset.samples)
    whole = dict(predict_dataset(model, dataset, CPU, batch_size=2, groups=groups, colour=GroupColourCut()))
    streamed = dict(predict_dataset(model, dataset, CPU, batch_size=2, groups=groups, colour=GroupColourCut(),
                                    stream_above=2))  # was a KeyError: 'cut_image'
    assert sorted(streamed) == sorted(whole) == [0, 1, 2, 3]
    for index, mask in whole.items():
        assert mask.shape == (32, 32)
        assert torch.equal(streamed[index], mask)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
@pytest.mark.parametrize("grouped", [False, True], ids=["single", "grouped"])
def test_a_batch_size_that_is_not_a_positive_integer_is_refused_by_name(tmp_path, batch_size, grouped):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1, got "):
        list(predict_dataset(ConstantModel(0.7), ImageFileDataset([path], 32), CPU, batch_size=batch_size,
                             groups=[0] if grouped else None))  # -1 predicted nothing, without a word
