"""Retrieval model files record the classes they were trained and validated on; ``coseg retrieval evaluate`` warns
when it scores them (retrieval protocols are class-disjoint)."""
from __future__ import annotations

import json

from click.testing import CliRunner

from apps.cli import main
from apps.retrieval.train import train
from coseg.models.checkpoint import TRAINED_ON, VALIDATED_ON, recorded_names
from tests.apps.retrieval_runs import TRAIN_CLASSES, tiny_config, tiny_set


def test_evaluating_training_classes_warns(tmp_path):
    data = tiny_set(tmp_path / "data")
    result = train(tiny_config(data, tmp_path / "run", epochs=1))
    trained, validated = sorted(result.train_classes), sorted(result.val_classes)
    assert len(trained) == 4 and len(validated) == 2 and set(trained + validated) == set(TRAIN_CLASSES)
    model = tmp_path / "run" / "best.safetensors"
    assert recorded_names(model, TRAINED_ON) == set(trained) and recorded_names(model, VALIDATED_ON) == set(validated)

    def evaluate(split: str) -> tuple[str, dict]:
        output = tmp_path / split
        r = CliRunner().invoke(main, ["retrieval", "evaluate", "--checkpoint", str(model), "--data", str(data),
                                      "--output", str(output), "--split", split, "--quiet"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.output, json.loads((output / "summary.json").read_text())

    output, summary = evaluate("train")
    lines = output.splitlines()
    shown = ", ".join(f"'{c}'" for c in trained)
    assert lines[0] == (f"warning: 4 of the 6 evaluated classes were used to train this model ({shown}): "
                        "these scores are not of unseen data")
    assert lines[1] == ("note: 2 of the 6 evaluated classes were this model's validation classes (used to choose its "
                        "epoch): " + ", ".join(f"'{c}'" for c in validated))
    assert summary["trained_on"] == 4 and summary["validated_on"] == 2
    output, summary = evaluate("test")
    assert "warning" not in output and "note:" not in output
    assert summary["trained_on"] == 0 and summary["validated_on"] == 0
