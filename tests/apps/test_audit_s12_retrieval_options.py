"""`coseg retrieval train` refuses a sampler option value the sampler cannot take as a usage error (exit 2, one line
naming the option): a value no data could make right before the data set's index is read, one the training labels
refuse (more classes per anchor than training has) as soon as they are known, before any image is read (both exited 1,
the first only once the labels were known); and a model file loads ready to embed (eval mode)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import apps.retrieval.train as retrieval_train
import tests.apps.test_audit_s11_retrieval_train_options as s11
from apps.retrieval.model import create_retrieval_model, load_retrieval_model
from tests.apps.retrieval_runs import BACKBONE


def refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str], message: str) -> None:
    """`coseg retrieval train` with ``options`` on the tiny set (4 training classes after 2 held out) is a usage error
    (one line holding ``message``) before any image is read, and writes nothing."""
    s11.test_wrong_option_is_a_usage_error_before_any_image_is_read(tmp_path, monkeypatch, options, message)


@pytest.mark.parametrize("options, message", [
    (["--sampler", "class_representative", "--iterations-per-representative", "0"],
     "iterations_per_representative must be >= 1, got 0"),
    (["--sampler", "hierarchical", "--classes-per-anchor", "0"], "classes_per_anchor must be >= 1, got 0"),
])
def test_a_sampler_value_no_data_takes_is_refused_before_the_data_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str], message: str) -> None:
    def no_index(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data set's index was read")

    monkeypatch.setattr(retrieval_train, "load_retrieval_split", no_index)
    refused(tmp_path, monkeypatch, options, message)


def test_more_classes_per_anchor_than_training_classes_is_a_usage_error_before_any_image_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    refused(tmp_path, monkeypatch, ["--sampler", "hierarchical", "--classes-per-anchor", "99"],
            "--classes-per-anchor 99, but training has 4 class(es) (those not held out for validation): lower "
            "--classes-per-anchor to at most 4")


def test_a_loaded_model_embeds_each_image_as_alone(tmp_path: Path) -> None:
    """load_retrieval_model returned the model in train mode: BatchNorm took its statistics from the batch (an
    image's embedding depended on the others of its batch) and updated the loaded running statistics."""
    path = tmp_path / "model.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(path)
    model = load_retrieval_model(path)
    assert not model.training
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        together, alone = model(images), model(images[:1])
    torch.testing.assert_close(together[:1], alone, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.train().training  # still trainable on
