"""apps.retrieval.train: the validation that selects the best checkpoint has at least 2 classes to tell apart
(MAP@R over one class is 100 whatever the model, so the first epoch would stay "best"); options of a stage the
mode does not run are refused."""
from __future__ import annotations

import pytest

from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.train import load_training_data, split_classes
from tests.apps.retrieval_runs import tiny_config, tiny_set


def test_named_validation_classes_are_at_least_two_and_leave_two_for_training():
    classes = ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match=r"--val-classes names 1 of the training split's 4 classes: validation needs "
                                         r"at least 2 \(MAP@R over a single class is 100"):
        split_classes(classes, RetrievalTrainConfig(val_classes=["b"]))
    with pytest.raises(ValueError, match="names 3 of the training split's 4 classes: .* and training 2"):
        split_classes(classes, RetrievalTrainConfig(val_classes=["a", "b", "c"]))
    assert split_classes(classes, RetrievalTrainConfig(val_classes=["b", "c"])) == (["a", "d"], ["b", "c"])


def test_validation_with_a_single_readable_class_is_refused(tmp_path):
    data = tiny_set(tmp_path / "data")
    for image in (data / "class5").iterdir():
        image.write_bytes(b"not an image")
    cfg = tiny_config(data, tmp_path / "run", val_classes=["class4", "class5"])
    with pytest.raises(ValueError, match=r"only the validation class class4 has readable images \(none of class5 "
                                         r"could be read\), and MAP@R over a single class is 100"):
        load_training_data(cfg)
    readable = load_training_data(tiny_config(data, tmp_path / "run", val_classes=["class3", "class4"]))
    assert readable.val_classes == ["class3", "class4"] and "class5" not in readable.train_classes


@pytest.mark.parametrize("option, value", [("finetune_epochs", 3), ("finetune_minutes", 2.0)])
def test_end_to_end_refuses_the_fine_tuning_stage_options(tmp_path, option, value):
    """end_to_end has no head stage to fine-tune after: the option was silently ignored."""
    from apps.retrieval.train import train

    cfg = tiny_config(tiny_set(tmp_path / "data"), tmp_path / "run", mode="end_to_end", epochs=1, **{option: value})
    flag = "--" + option.replace("_", "-")
    with pytest.raises(ValueError, match=f"{flag} {value}: the fine-tuning stage follows the head stage of mode "
                                         "staged; mode end_to_end trains everything for --epochs"):
        train(cfg)
    assert not (tmp_path / "run").exists()
