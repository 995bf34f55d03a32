"""Option values the model or the objective cannot take, and files that are not there, are usage errors (exit 2)
naming the option before any image is read: they used to stop the run with exit 1 once the data set was decoded,
some in words that named no option (``hidden_channels`` for ``--embedding-dim 0``)."""
from __future__ import annotations

import pytest

import coseg.train as train_module
from tests.coseg.test_train_run import TINY, coseg


@pytest.mark.parametrize("option, value, message", [
    ("--embedding-dim", 0, "embedding_dim must be >= 1, got 0"),
    ("--group-levels", -1, "group_levels must be >= 0, got -1"),
    ("--encoder-lr-scale", -1, "encoder_lr_scale must be >= 0, got -1.0"),
    ("--dice-weight", -1, "dice_weight must be >= 0, got -1.0"),
    ("--triplet-margin", 0, "triplet_margin must be > 0, got 0.0"),
    ("--weights", "nosuch.safetensors", "weights: nosuch.safetensors is not a file (give imagenet, none or a local "
                                        "weights file)"),
    ("--splits", "nosuch.json", "splits: nosuch.json is not a file"),
    ("--encoder", "no_such_encoder", "unknown encoder 'no_such_encoder': smp has no encoder of that name"),
    ("--encoder", "tu-no_such_model", "unknown encoder 'tu-no_such_model': timm has no model 'no_such_model'"),
    ("--crop-scale", 0.0001, "crop_scale 0.0001 with crop_ratio (0.75, 1.3333333333333333) makes crops of 64 px "
                             "images under 2 pixels a side"),
])
def test_a_value_the_run_cannot_take_is_a_usage_error_before_the_data_is_read(tmp_path, monkeypatch, option, value,
                                                                               message):
    def no_reading(*args, **kwargs):
        raise AssertionError("the data set was read")

    monkeypatch.setattr(train_module, "find_samples", no_reading)
    args = ["train", "--data", tmp_path, "--output", tmp_path / "run", *TINY, option, value]
    if option == "--splits":
        args += ["--train-split", "train"]
    code, output = coseg(*args)
    assert code == 2 and message in output, output
    assert not (tmp_path / "run").exists()


def test_all_loss_weights_0_is_a_usage_error(tmp_path):
    code, output = coseg("train", "--data", tmp_path, *TINY, "--dice-weight", 0, "--ce-weight", 0,
                         "--triplet-weight", 0)
    assert code == 2 and "the loss weights (dice_weight, ce_weight, focal_weight, jaccard_weight, triplet_weight) " \
                         "are all 0: nothing would be trained" in output, output
