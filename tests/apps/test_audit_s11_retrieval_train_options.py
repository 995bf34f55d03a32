"""`coseg retrieval train` refuses a wrong option value as a usage error (exit 2, one line naming the option), as
`coseg train` does, before any image is read or anything is written (these exited 1; a missing --weights file was
found only when the model was built; a value a loss or miner refuses did not name it), and a batch of one class,
with which a loss of the batch's triplets is 0 at every step, is refused."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import apps.retrieval.train as retrieval_train
from apps.cli import main
from apps.retrieval.components import build_components
from apps.retrieval.config import RetrievalTrainConfig
from coseg.engine import ConfigError
from tests.apps.retrieval_runs import BACKBONE, tiny_set


@pytest.mark.parametrize("options, message", [
    (["--weights", "nosuch.safetensors"],
     "weights: nosuch.safetensors is not a file (give imagenet, none or a local weights file)"),
    (["--feature-views", "5"], "feature_views must be in [1, 4], got 5"),
    (["--embedding-dim", "-1"], "embedding_dim must be >= 0"),
    (["--whiten-shrinkage", "0"], "whiten_shrinkage must be > 0, got 0.0"),
    (["--mode", "end_to_end", "--finetune-epochs", "1"], "--finetune-epochs 1: the fine-tuning stage follows"),
    (["--lr-schedule", "linear"], "unknown lr schedule 'linear'; valid: constant, cosine"),
    (["--head-init", "identity"], "head_init identity needs embedding_dim = the backbone's feature size"),
    (["--backbone", "no_such_net"], "unknown timm backbone 'no_such_net'"),
    (["--frozen-stages", "9"], "frozen_stages must be in 0..5 (backbone 'test_efficientnet' has 5 stages), got 9"),
    (["--pool-stages", "9"], "pool_stages [9] out of range: backbone 'test_efficientnet' has 5 stages"),
    (["--loss", "soft_triple", "--la", "-1"], "loss 'soft_triple': la must be"),
    (["--loss", "soft_triple", "--centers-per-class", "0"], "loss 'soft_triple': centers_per_class must be"),
    (["--miner", "semi_hard", "--margin", "0"], "miner 'semi_hard': margin must be"),
    (["--sampler", "smart_mining", "--num-neighbours", "0"], "smart miner: num_neighbours must be"),
    (["--sampler", "smart_mining", "--controller-gain", "0"], "--controller-gain 0.0: gain must be"),
    (["--sampler", "smart_mining", "--loss", "soft_triple"],
     "loss 'soft_triple' cannot take the triplets the smart_mining sampler mines"),
    (["--sampler", "smart_mining", "--miner", "batch_hard"], "--miner does not apply (leave it unset)"),
    (["--sampler", "hierarchical", "--num-levels", "0"], "batch sampler 'hierarchical': num_levels must be"),
    (["--sampler", "hierarchical", "--distance", "cosine"], "batch sampler 'hierarchical': CosineSimilarity is a "
                                                           "similarity"),
])
def test_wrong_option_is_a_usage_error_before_any_image_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                options: list[str], message: str) -> None:
    data = tiny_set(tmp_path / "data")

    def no_images(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was read")

    monkeypatch.setattr(retrieval_train, "ImageCache", no_images)
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "retrieval", "train", "--data", str(data), "--output", str(output), "--backbone", BACKBONE,
        "--weights", "none", "--image-size", "32", "--embedding-dim", "8", "--epochs", "1",
        "--classes-per-batch", "2", "--samples-per-class", "2", "--val-fraction", "0.34", "--device", "cpu",
        "--quiet", *options])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert not output.exists()


def test_a_training_class_not_found_names_the_option(tmp_path: Path) -> None:
    """`--train-classes class0,nope` said only "cannot resolve 1 class name(s) among 8 classes: 'nope' not found"
    (--val-classes names itself)."""
    data = tiny_set(tmp_path / "data")
    result = CliRunner().invoke(main, ["retrieval", "train", "--data", str(data), "--output", str(tmp_path / "out"),
                                       "--train-classes", "class0,nope", "--weights", "none", "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: --train-classes: cannot resolve 1 class name(s) among 8 classes: 'nope' not found" in result.output
    assert not (tmp_path / "out").exists()


LABELS = torch.arange(4).repeat_interleave(3)


@pytest.mark.parametrize("loss, sampler", [("triplet_margin", "pk"), ("global", "pk"), ("triplet_upper_bound", "pk"),
                                           ("hierarchical_triplet", "hierarchical"),
                                           ("triplet_margin", "class_representative")])
def test_losses_of_the_batch_triplets_need_two_classes_in_a_batch(loss: str, sampler: str) -> None:
    """With --classes-per-batch 1 these losses were 0 at every step (no negative in a batch), and training ran on
    without a word."""
    objective = build_components(RetrievalTrainConfig(loss=loss, sampler=sampler, classes_per_batch=2), LABELS, 4).loss
    if hasattr(objective, "update_tree"):  # the hierarchical triplet loss's margins come from its class tree
        objective.update_tree(torch.randn(len(LABELS), 128), LABELS)
    assert float(objective(torch.randn(6, 128), torch.zeros(6, dtype=torch.long))) == 0
    with pytest.raises(ConfigError, match=f"loss '{loss}' takes its triplets within a batch, and with "
                                          "--classes-per-batch 1 no image of a batch has a negative"):
        build_components(RetrievalTrainConfig(loss=loss, sampler=sampler, classes_per_batch=1), LABELS, 4)


def test_a_loss_with_class_proxies_takes_one_class_per_batch() -> None:
    assert build_components(RetrievalTrainConfig(loss="soft_triple", classes_per_batch=1), LABELS, 4).loss is not None
