"""The command line as a user meets it: `--resume` where no run is, a config file's bad device, evaluate's group
list written as a script joins it, the other trainer's config file, a demo into a folder that is not a demo's, the
report's thumbnail option in the README."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import main
from coseg.models import create_model
from tests.coseg.pipeline_fixtures import synthetic_set


def coseg(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.mark.parametrize("command", [["train"], ["retrieval", "train"]])
def test_resume_where_no_run_is_says_so_not_that_data_is_missing(tmp_path: Path, command: list[str]) -> None:
    """README: `coseg train --resume --output runs/mine` reads the run's config.yaml; with a mistyped --output it
    said "--data is required", as if --resume needed more options."""
    code, output = coseg(*command, "--resume", "--output", tmp_path / "typo")
    assert code == 1 and f"{tmp_path / 'typo'}: nothing to resume (no config.yaml of a run there)" in output, output
    assert "--data is required" not in output and not (tmp_path / "typo").exists()


@pytest.mark.parametrize("command", [["train"], ["retrieval", "train"]])
def test_a_device_of_the_config_file_is_named_with_the_file(tmp_path: Path, command: list[str]) -> None:
    """The usage error said "Invalid value for '--device'" for a device only the file gave (the data and output
    folders name the file)."""
    config = tmp_path / "my.yaml"
    config.write_text("device: gpu\n")
    code, output = coseg(*command, "--config", config, "--data", tmp_path, "--output", tmp_path / "run")
    assert code == 2 and "unknown device 'gpu'" in output and f"(device: gpu in {config})" in output, output
    assert not (tmp_path / "run").exists()
    code, output = coseg(*command, "--data", tmp_path, "--output", tmp_path / "run", "--device", "gpu")
    assert code == 2 and "unknown device 'gpu'" in output and " in " not in output.split("unknown device")[1], output


def test_evaluate_groups_with_a_trailing_comma(tmp_path: Path) -> None:
    """`--groups 00-star,` failed with "'' not found"; the trainers' group lists and `retrieval evaluate
    --train-classes` leave empty names out."""
    data = synthetic_set(tmp_path / "data", groups=2, images=2)
    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=0).save(model, {"image_size": "64"})
    code, output = coseg("evaluate", "--checkpoint", model, "--data", data, "--output", tmp_path / "ev", "--groups",
                         "00-star, ,", "--no-colour-cut", "--edge-radius", 0, "--quiet")
    assert code == 0, output
    assert list(json.loads((tmp_path / "ev" / "summary.json").read_text())["per_group"]) == ["00-star"]


@pytest.mark.parametrize("command, other, config", [
    (["train"], "coseg retrieval train", "apps.retrieval.config:RetrievalTrainConfig"),
    (["retrieval", "train"], "coseg train", "coseg.config:CosegTrainConfig"),
])
def test_the_other_trainers_config_file_names_its_command(tmp_path: Path, command: list[str], other: str,
                                                           config: str) -> None:
    """Both trainers write config.yaml; the other one's was told as dozens of unknown keys and the valid ones."""
    import importlib

    from coseg.engine.config import save_config

    module, name = config.split(":")
    saved = tmp_path / "config.yaml"
    save_config(getattr(importlib.import_module(module), name)(data=str(tmp_path)), saved)
    code, output = coseg(*command, "--config", saved, "--output", tmp_path / "run")
    assert code == 2, output
    assert f"{saved}: a config file of `{other}`, not of this command" in output
    assert f"give it to `{other} --config`" in output and "valid keys" not in output
    assert not (tmp_path / "run").exists()
    saved.write_text("epochs: 1\nlearning_rate: 0.1\n")  # a key of neither: told as before
    code, output = coseg(*command, "--config", saved, "--data", tmp_path, "--output", tmp_path / "run")
    assert code == 2 and "unknown key(s) learning_rate; valid keys:" in output, output


def test_demo_refuses_a_folder_that_holds_no_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`coseg demo --output .` in a project folder wrote its 24 generated groups and a splits.json into the user's
    data/images/ (and would have replaced a run/ there); a demo's own folder is still replaced."""
    from coseg import demo

    started = []

    def stand_in(output: Path, **kwargs: object) -> None:
        started.append(output)
        raise ValueError("stand-in demo")

    monkeypatch.setattr(demo, "run_demo", stand_in)
    project = tmp_path / "project"
    (project / "data" / "images" / "mine").mkdir(parents=True)
    code, output = coseg("demo", "--output", project, "--minutes", 0.01)
    assert code == 1 and f"{project} holds files that are not a demo's (data)" in output, output
    assert not started and [p.name for p in project.iterdir()] == ["data"]
    for _ in range(2):  # a new folder, then the demo's own
        code, output = coseg("demo", "--output", tmp_path / "demo", "--minutes", 0.01)
        assert code == 1 and "stand-in demo" in output, output
    assert started == [tmp_path / "demo"] * 2 and (tmp_path / "demo" / ".coseg-demo").is_file()


def test_the_readme_states_the_thumbnail_option_and_its_default() -> None:
    """`--thumbnail` (coseg report, and evaluate/predict/retrieval evaluate with --report) was in no README line."""
    import re

    import click

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    stated = re.search(r"`--thumbnail N`\s+\(default (\d+);", readme)
    assert stated, "README does not state --thumbnail"

    def commands(group: click.Group):
        for command in group.commands.values():
            yield from commands(command) if isinstance(command, click.Group) else [command]

    defaults = {p.default for c in commands(main) for p in c.params if p.name == "thumbnail"}
    assert defaults == {int(stated.group(1))}


def test_evaluate_tells_the_chosen_groups_it_cannot_score(tmp_path: Path) -> None:
    """A chosen group without any ground-truth mask was left out of the means without a word (the trainers refuse
    it); a split listing no group said "none has a ground-truth mask"."""
    import shutil

    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    shutil.rmtree(data / "ground_truth" / "01-ellipse")
    (data / "splits.json").write_text(json.dumps({"test": ["00-star", "01-ellipse"], "none": []}))
    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=0).save(model, {"image_size": "64"})
    fast = ["--no-colour-cut", "--edge-radius", 0, "--quiet"]
    code, output = coseg("evaluate", "--checkpoint", model, "--data", data, "--output", tmp_path / "ev", "--split",
                         "test", *fast)
    assert code == 0, output
    assert ("warning: 1 of the 2 chosen groups has no ground-truth mask, so they are not scored and the means are "
            "over the others: 01-ellipse") in output
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert list(summary["per_group"]) == ["00-star"] and summary["unscored_groups"] == ["01-ellipse"]
    code, output = coseg("evaluate", "--checkpoint", model, "--data", data, "--output", tmp_path / "ev2", "--split",
                         "none", *fast)
    assert code == 1 and "split 'none' of" in output and "lists no group" in output, output
    assert not (tmp_path / "ev2").exists()
