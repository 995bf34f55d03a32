"""Model files record the groups they were trained and validated on; ``coseg evaluate`` warns when it scores them,
and ``coseg ensemble`` records the union of its members'."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import main
from coseg.config import CosegTrainConfig
from coseg.data import make_synthetic_coseg
from coseg.models.checkpoint import (TRAINED_ON, VALIDATED_ON, names_record, read_checkpoint, recorded_names,
                                     write_checkpoint)
from coseg.models.cosegnet import MODEL_KIND
from coseg.train import train

GROUPS = ["A", "B", "C", "D"]


def tiny_config(data: Path, output: Path, **changes) -> CosegTrainConfig:
    settings = dict(members=1, epochs=1, weights="none", image_size=32, groups_per_batch=2, images_per_group=2,
                    triplet_pixels=4, group_levels=0, augment=False, device="cpu", quiet=True)
    return CosegTrainConfig(data=str(data), output=str(output), **{**settings, **changes})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic_coseg(tmp_path_factory.mktemp("seen") / "data", num_groups=4, images_per_group=2, size=32,
                                group_names=GROUPS)


@pytest.fixture(scope="module")
def model(data: Path) -> Path:
    """A model trained on A, B with C as its validation group."""
    output = data.parent / "run"
    train(tiny_config(data, output, train_groups=["A", "B"], val_groups=["C"]))
    return output / "best.safetensors"


def evaluate(model: Path, data: Path, output: Path, groups: str) -> tuple[str, dict]:
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(model), "--data", str(data), "--output",
                                       str(output), "--groups", groups, "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output, json.loads((output / "summary.json").read_text())


def test_the_model_file_records_its_groups(model):
    assert recorded_names(model, TRAINED_ON) == {"A", "B"}
    assert recorded_names(model, VALIDATED_ON) == {"C"}
    assert recorded_names(model.with_name("last.safetensors"), TRAINED_ON) == {"A", "B"}


def test_evaluating_seen_groups_warns_before_the_scores(model, data, tmp_path):
    output, summary = evaluate(model, data, tmp_path / "eval", "A,C,D")
    lines = output.splitlines()
    assert ("warning: 1 of the 3 evaluated groups was used to train this model ('A'): these scores are not of unseen "
            "data") in lines
    assert ("note: 1 of the 3 evaluated groups was this model's validation groups (used to choose its epoch): 'C'"
            in lines)
    assert lines.index(next(line for line in lines if line.startswith("group "))) > 1
    assert summary["trained_on"] == 1 and summary["validated_on"] == 1


def test_groups_holding_copies_of_seen_images_count_as_seen(model, data, tmp_path):
    # Internet's Airplane100 is copied out of Airplane: a model trained on Airplane has seen Airplane100's images
    copied = tmp_path / "data"
    shutil.copytree(data, copied)
    for source, group in (("A", "A100"), ("C", "C100")):
        for folder in ("images", "ground_truth"):
            (copied / folder / group).mkdir()
            first = sorted((copied / folder / source).iterdir())[0]
            shutil.copy(first, copied / folder / group / first.name)
    (copied / "images" / "D" / "other.jpg").write_bytes(b"\xff" * 7)  # a size no seen group holds: not read
    output, summary = evaluate(model, copied, tmp_path / "eval", "A100,C100,D")
    lines = output.splitlines()
    assert ("warning: 1 of the 3 evaluated groups was used to train this model ('A100'): these scores are not of "
            "unseen data") in lines
    assert "note: 1 of the 3 evaluated groups was this model's validation groups (used to choose its epoch): 'C100'" \
        in lines
    assert summary["trained_on"] == 1 and summary["validated_on"] == 1


def test_unseen_groups_and_unrecorded_models_give_no_warning(model, data, tmp_path):
    output, summary = evaluate(model, data, tmp_path / "unseen", "D")
    assert "warning" not in output and "note:" not in output
    assert summary["trained_on"] == 0 and summary["validated_on"] == 0
    state, config, metadata = read_checkpoint(model)
    older = tmp_path / "older.safetensors"  # as written before the groups were recorded
    write_checkpoint(older, state, config, {k: v for k, v in metadata.items() if k not in (TRAINED_ON, VALIDATED_ON)},
                     kind=MODEL_KIND)
    output, summary = evaluate(older, data, tmp_path / "older", "A,C,D")
    assert "warning" not in output and "note:" not in output
    assert "trained_on" not in summary and "validated_on" not in summary


def test_an_ensemble_records_its_members_union(model, data, tmp_path):
    other = tmp_path / "other"
    train(tiny_config(data, other, members=2, epochs=2, train_groups=["B", "D"], val_fraction=0.0))
    assert recorded_names(other / "best.safetensors", TRAINED_ON) == {"B", "D"}
    assert recorded_names(other / "best.safetensors", VALIDATED_ON) == frozenset()
    joined = tmp_path / "joined.safetensors"
    result = CliRunner().invoke(main, ["ensemble", str(model), str(other / "best.safetensors"), "--output",
                                       str(joined)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert recorded_names(joined, TRAINED_ON) == {"A", "B", "D"}
    assert recorded_names(joined, VALIDATED_ON) == {"C"}
    output, summary = evaluate(joined, data, tmp_path / "eval", "A,C,D")
    assert "warning: 2 of the 3 evaluated groups were used to train this model ('A', 'D')" in output
    assert summary["trained_on"] == 2 and summary["validated_on"] == 1


def test_too_many_names_are_counted_not_stored(tmp_path, monkeypatch):
    monkeypatch.setattr("coseg.models.checkpoint.MAX_NAMES_JSON", 20)
    assert json.loads(names_record(["a", "b"])) == {"count": 2, "names": ["a", "b"]}
    assert json.loads(names_record([f"class{i}" for i in range(5)])) == {"count": 5}
    path = tmp_path / "model.safetensors"
    write_checkpoint(path, {}, {}, {TRAINED_ON: names_record([f"class{i}" for i in range(5)]),
                                    VALIDATED_ON: '{"names": 3}'})
    assert recorded_names(path, TRAINED_ON) is None
    with pytest.raises(ValueError, match="model.safetensors: its metadata 'validated_on' must be a JSON object"):
        recorded_names(path, VALIDATED_ON)
