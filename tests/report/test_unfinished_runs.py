"""What a run stopped between its stages or members says: a staged retrieval run killed after its head stage,
before its fine-tuning stage wrote anything, and an ensemble killed while a resume trains its members on, are
"Unfinished" in their run's files and report until --resume ends them."""
from __future__ import annotations

from dataclasses import replace

import pytest

from apps.retrieval.learner import RetrievalLearner
from apps.retrieval.train import train as train_retrieval
from coseg.config import CosegTrainConfig
from coseg.models import checkpoint_metadata, create_model
from coseg.report.training import training_section
from coseg.train import CosegTask, train as train_coseg
from tests.apps.retrieval_runs import tiny_config, tiny_set
from tests.coseg.pipeline_fixtures import synthetic_set


def interrupted(*args, **kwargs):
    raise KeyboardInterrupt


def test_a_staged_run_killed_before_its_fine_tuning_stage_is_unfinished(tmp_path, monkeypatch):
    run = tmp_path / "run"
    cfg = tiny_config(tiny_set(tmp_path / "data"), run, epochs=1, finetune_epochs=1)
    with monkeypatch.context() as patch:
        patch.setattr(RetrievalLearner, "load", interrupted)  # the fine-tuning stage's start from the head stage
        with pytest.raises(KeyboardInterrupt):
            train_retrieval(cfg)
    assert checkpoint_metadata(run / "last.safetensors")["finished"] == "epochs"  # the head stage's
    assert not (run / "finetune" / "log.csv").exists()
    html = training_section(run, tmp_path / "files", "s1")
    assert ("<b>Unfinished:</b> its head stage finished, but its fine-tuning stage (finetune/) has not started yet"
            in html and "training it again with --resume (and its config.yaml) continues it" in html), html
    train_retrieval(cfg, resume=True)
    assert "Unfinished" not in training_section(run, tmp_path / "files", "s1")
    assert checkpoint_metadata(run / "finetune" / "last.safetensors")["finished"] == "epochs"


@pytest.mark.slow  # an ensemble of two members trained, resumed and killed, then resumed to its end
def test_an_ensemble_resumed_to_train_on_is_unfinished_until_its_members_end(tmp_path, monkeypatch):
    run = tmp_path / "run"
    cfg = CosegTrainConfig(data=str(synthetic_set(tmp_path / "data", groups=3, images=2, size=32)), output=str(run),
                           members=2, epochs=2, weights="none", image_size=32, groups_per_batch=2, images_per_group=2,
                           triplet_pixels=8, val_fraction=0.34, device="cpu", quiet=True)
    train_coseg(cfg)  # one epoch each
    assert checkpoint_metadata(run / "last.safetensors")["finished"] == "epochs"
    with monkeypatch.context() as patch:
        patch.setattr(CosegTask, "train_step", interrupted)  # killed in member 0's second epoch
        with pytest.raises(KeyboardInterrupt):
            train_coseg(replace(cfg, epochs=4), resume=True)
    assert checkpoint_metadata(run / "last.safetensors")["finished"] == "no"
    assert checkpoint_metadata(run / "member0" / "last.safetensors")["finished"] == "no"
    html = training_section(run, tmp_path / "files", "s1")
    assert ("<b>Unfinished:</b> its members have not all reached their last epoch (see their sections)" in html
            and "training it again with --resume (and its config.yaml) continues it" in html), html
    assert "<b>Unfinished:</b> its last model is of epoch 1" in training_section(run / "member0", tmp_path, "s2")
    train_coseg(replace(cfg, epochs=4), resume=True)
    assert checkpoint_metadata(run / "last.safetensors")["finished"] == "epochs"
    assert "Unfinished" not in training_section(run, tmp_path / "files", "s1")


def test_the_fine_tuning_stage_is_pending_only_when_the_config_asks_for_it(tmp_path):
    from coseg.report.training import fine_tuning_pending

    run = tmp_path / "run"
    (run / "finetune").mkdir(parents=True)
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1)
    model.save(run / "last.safetensors", metadata={"epoch": "2", "finished": "epochs"})
    for config, pending in (("mode: staged\nfinetune_epochs: 3\n", True), ("mode: staged\nfinetune_epochs: 0\n", False),
                            ("mode: end_to_end\nfinetune_epochs: 3\n", False), ("members: 3\n", False),  # coseg
                            ("mode: staged\nfinetune_epochs: [\n", False), ("- staged\n", False)):  # not a config
        (run / "config.yaml").write_text(config)
        assert fine_tuning_pending(run) == pending, config
        assert ("Unfinished" in training_section(run, tmp_path / "files", "s1")) == pending, config
    (run / "config.yaml").write_text("mode: staged\nfinetune_epochs: 3\n")
    model.save(run / "finetune" / "last.safetensors", metadata={"epoch": "1", "finished": "no"})
    assert not fine_tuning_pending(run)  # started: its own section says it is unfinished
