"""`coseg retrieval train` with a fine-tuning stage says which stage best.safetensors holds: also when the head stage
validated better, and when a resumed fine-tuning stage keeps the fine-tuned model an earlier run promoted (was:
nothing said in both cases)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from apps.cli import main
from apps.retrieval import train as train_module
from tests.apps.retrieval_runs import BACKBONE, tiny_set

TINY = ["--backbone", BACKBONE, "--weights", "none", "--image-size", 32, "--embedding-dim", 8, "--classes-per-batch",
        2, "--samples-per-class", 2, "--val-fraction", 0.34, "--epochs", 1, "--quiet"]
FINETUNED = "best.safetensors is the fine-tuned model (better validation MAP@R)"
HEAD = "best.safetensors is the head stage's model (the fine-tuning stage did not validate better)"


def scripted_validation(monkeypatch: pytest.MonkeyPatch, scores: list[float]) -> None:
    """Validation returns ``scores`` in order, one per epoch of either stage."""
    def validate(_, learner):
        score = scores.pop(0)
        return {"R@1": score, "MAP@R": score}

    monkeypatch.setattr(train_module.Validation, "__call__", validate)


def retrieval_train(*args) -> str:
    result = CliRunner().invoke(main, ["retrieval", "train", *map(str, [*args, *TINY])], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_resumed_fine_tuning_stage_says_the_fine_tuned_model_is_still_kept(tmp_path, monkeypatch):
    data, run = tiny_set(tmp_path / "data"), tmp_path / "run"
    scripted_validation(monkeypatch, [10.0, 30.0, 20.0])  # head 10; fine-tuning 30 (promoted), then 20
    assert FINETUNED in retrieval_train("--data", data, "--output", run, "--finetune-epochs", 1)
    resumed = retrieval_train("--data", data, "--output", run, "--finetune-epochs", 2, "--resume")
    assert FINETUNED in resumed and HEAD not in resumed
    assert (run / "best.safetensors").read_bytes() == (run / "finetune" / "best.safetensors").read_bytes()


def test_a_head_stage_that_validated_better_is_named(tmp_path, monkeypatch):
    data, run = tiny_set(tmp_path / "data"), tmp_path / "run"
    scripted_validation(monkeypatch, [30.0, 10.0, 15.0])  # head wins; then a run without fine-tuning
    output = retrieval_train("--data", data, "--output", run, "--finetune-epochs", 1)
    assert HEAD in output and FINETUNED not in output
    assert (run / "best.safetensors").read_bytes() != (run / "finetune" / "best.safetensors").read_bytes()
    assert "best.safetensors is" not in retrieval_train("--data", data, "--output", tmp_path / "head_only")
