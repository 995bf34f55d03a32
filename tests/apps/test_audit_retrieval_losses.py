"""`coseg retrieval train` with a loss that cannot learn the classes as asked (a pixel loss, a regulariser alone,
in-batch triplet mining with one image per class): refused before anything is written, saying why."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from apps.cli import main
from apps.retrieval.components import build_components
from apps.retrieval.config import RetrievalTrainConfig
from coseg.engine import ConfigError
from tests.apps.retrieval_runs import BACKBONE, TRAIN_CLASSES, tiny_set


def refused(tmp_path, *options: str) -> str:
    data = tiny_set(tmp_path / "data")
    run = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "retrieval", "train", "--data", str(data), "--train-classes", ",".join(TRAIN_CLASSES), "--output", str(run),
        "--backbone", BACKBONE, "--weights", "none", "--image-size", "32", "--embedding-dim", "8",
        "--classes-per-batch", "2", "--val-fraction", "0.34", "--epochs", "1", "--quiet", "--device", "cpu",
        *options], catch_exceptions=False)
    assert result.exit_code != 0
    assert not run.exists()  # refused before config.yaml (or anything else) is written
    return result.output


def test_pixel_loss_is_refused_before_the_run_starts(tmp_path):
    output = refused(tmp_path, "--samples-per-class", "2", "--loss", "is_triplet")
    assert "is_triplet" in output and "per-pixel embedding maps" in output, output


def test_the_regulariser_alone_is_refused_before_the_run_starts(tmp_path):
    output = refused(tmp_path, "--samples-per-class", "2", "--loss", "zero_mean")
    assert "loss 'zero_mean' is the zero-mean regulariser" in output and "--zero-mean-weight" in output, output


def test_in_batch_mining_with_one_image_per_class_is_refused_before_the_run_starts(tmp_path):
    output = refused(tmp_path, "--samples-per-class", "1")  # the default loss, triplet_margin
    assert "with --samples-per-class 1 no image of a batch has a positive" in output, output


LABELS = torch.arange(4).repeat_interleave(3)


@pytest.mark.parametrize("loss, sampler", [("triplet_margin", "pk"), ("global", "pk"),
                                           ("hierarchical_triplet", "hierarchical"),
                                           ("triplet_margin", "class_representative"), ("triplet_upper_bound", "pk")])
def test_mining_losses_need_two_images_of_a_class_in_a_batch(loss, sampler):
    cfg = RetrievalTrainConfig(loss=loss, sampler=sampler, classes_per_batch=2, samples_per_class=1)
    with pytest.raises(ConfigError, match=f"loss '{loss}' takes its triplets within a batch"):
        build_components(cfg, LABELS, 4)
    build_components(RetrievalTrainConfig(loss=loss, sampler=sampler, classes_per_batch=2, samples_per_class=2),
                     LABELS, 4)


@pytest.mark.parametrize("loss, sampler", [("soft_triple", "pk"), ("global", "smart_mining")])
def test_proxy_losses_and_dataset_mining_take_one_image_per_class(loss, sampler):
    cfg = RetrievalTrainConfig(loss=loss, sampler=sampler, classes_per_batch=3, samples_per_class=1)
    assert build_components(cfg, LABELS, 4).loss is not None
