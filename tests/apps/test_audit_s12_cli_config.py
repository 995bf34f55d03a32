"""The trainers' configs as a user writes them: `~` in a path of the YAML file or quoted on the command line."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from apps.cli import main

TRAINERS = [(["train"], "coseg.train"), (["retrieval", "train"], "apps.retrieval.train")]


def coseg(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def captured_config(monkeypatch: pytest.MonkeyPatch, module: str) -> list[Any]:
    """The configs the command hands to its trainer, which stops at once (``module.train`` replaced)."""
    import importlib

    seen: list[Any] = []

    def stand_in(cfg: Any, resume: bool = False) -> None:
        seen.append(cfg)
        raise ValueError("stand-in trainer")

    monkeypatch.setattr(importlib.import_module(module), "train", stand_in)
    return seen


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder of its own (``~``) and another current folder, where a folder named ``~`` must not appear."""
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return home


@pytest.mark.parametrize("command, module", TRAINERS)
def test_tilde_in_the_config_files_paths_is_the_home_folder(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                            command: list[str], module: str) -> None:
    """`cache_dir: ~/cache` in a config file made ./~/cache (and `data: ~/data` was "not found")."""
    seen = captured_config(monkeypatch, module)
    config = home / "my.yaml"
    config.write_text("data: ~/data\noutput: ~/run\ncache_dir: ~/cache\nweights: ~/w.safetensors\n")
    code, output = coseg(*command, "--config", config)
    assert code == 1 and "stand-in trainer" in output, output
    cfg = seen[0]
    assert (cfg.data, cfg.output, cfg.cache_dir, cfg.weights) == (
        str(home / "data"), str(home / "run"), str(home / "cache"), str(home / "w.safetensors"))
    assert not Path("~").exists()


@pytest.mark.parametrize("command, module", TRAINERS)
def test_a_quoted_tilde_on_the_command_line_is_the_home_folder(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                               command: list[str], module: str) -> None:
    """The shell leaves a quoted "~/data" as it is: it was read as a folder named ~ in the current one."""
    seen = captured_config(monkeypatch, module)
    code, output = coseg(*command, "--data", "~/data", "--output", "~/run", "--cache-dir", "~/cache")
    assert code == 1 and "stand-in trainer" in output, output
    assert (seen[0].data, seen[0].output, seen[0].cache_dir) == (str(home / "data"), str(home / "run"),
                                                                str(home / "cache"))
    code, output = coseg(*command, "--resume", "--output", "~/typo")  # the run's config.yaml is looked for there
    assert code == 1 and f"{home / 'typo'}: nothing to resume" in output, output
    assert not Path("~").exists()


def test_an_interrupted_demo_tells_what_it_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during `coseg demo` said "interrupted before it wrote its results", though the demo had written its
    data set (which the next demo reuses) and its training run."""
    from coseg import demo

    def interrupted(output: Path, **kwargs: object) -> None:
        (output / "data").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", interrupted)
    code, output = coseg("demo", "--output", tmp_path / "demo", "--minutes", 0.01)
    assert code == 130 and "before it wrote its results" not in output, output
    assert "interrupted; --output keeps what the demo wrote: its generated data/" in output and "run/" in output


def test_one_overlapping_group_is_told_in_the_singular() -> None:
    """"1 of the 4 evaluated groups were used to train this model"."""
    from coseg.evaluate import TRAINED_ON, VALIDATED_ON, overlap_warnings

    one = overlap_warnings({TRAINED_ON: ["a"], VALIDATED_ON: ["b"]}, 4)
    assert one[0].startswith("warning: 1 of the 4 evaluated groups was used to train this model ('a')")
    assert one[1].startswith("note: 1 of the 4 evaluated groups was this model's validation groups")
    two = overlap_warnings({TRAINED_ON: ["a", "c"]}, 4, "classes")
    assert two == ["warning: 2 of the 4 evaluated classes were used to train this model ('a', 'c'): these scores are "
                   "not of unseen data"]


@pytest.mark.parametrize("groups", ["", " , "])
def test_evaluate_refuses_a_group_list_naming_no_group(tmp_path: Path, groups: str) -> None:
    """`--groups "$GROUPS"` with the variable unset evaluated every group, as if --groups had been left out."""
    from coseg.models import create_model
    from tests.coseg.pipeline_fixtures import synthetic_set

    data = synthetic_set(tmp_path / "data", groups=2, images=2)
    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=0).save(model, {"image_size": "64"})
    code, output = coseg("evaluate", "--checkpoint", model, "--data", data, "--output", tmp_path / "ev", "--groups",
                         groups, "--no-colour-cut", "--edge-radius", 0, "--quiet")
    assert code == 2 and "Invalid value for '--groups': names none" in output, output
    assert not (tmp_path / "ev").exists()


def test_retrieval_evaluate_refuses_a_class_list_naming_none(tmp_path: Path) -> None:
    """`--train-classes ""` evaluated the official or splits.json test split, as if the option had been left out."""
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"not read: the option is refused first")
    code, output = coseg("retrieval", "evaluate", "--checkpoint", model, "--data", tmp_path, "--output",
                         tmp_path / "ev", "--train-classes", "", "--quiet")
    assert code == 2 and "Invalid value for '--train-classes': names none" in output, output
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["evaluate", "--help"], ["split", "--help"]])
def test_help_imports_neither_torch_nor_the_retrieval_models(args: list[str]) -> None:
    """`coseg --help` took seconds: importing the CLI imported timm and torchvision (the retrieval commands), and
    reading the command line imported torch."""
    import subprocess
    import sys

    code = ("import sys\nfrom apps.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('loaded:', sorted(m for m in ('torch', 'timm', 'torchvision', 'apps.retrieval')\n"
            "                        if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).parents[2])
    assert "Usage: " in run.stdout and run.stdout.rstrip().endswith("loaded: []"), run.stdout + run.stderr


def test_the_retrieval_commands_are_there_when_looked_up_and_listed() -> None:
    from apps.cli import main

    code, output = coseg("--help")
    assert code == 0 and "retrieval  Image retrieval: train embeddings, evaluate them, export a" in output, output
    code, output = coseg("retrieval", "--help")
    assert code == 0 and all(f"  {name}  " in output for name in ("evaluate", "export", "search", "train")), output
    assert set(main.commands["retrieval"].commands) == {"evaluate", "export", "search", "train"}


def test_ctrl_c_while_the_retrieval_commands_are_imported_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    import apps.cli
    from apps.cli import LazyGroup

    def interrupted(name: str) -> None:
        raise KeyboardInterrupt

    group = click.Group("top")
    group.add_command(LazyGroup("lazy", commands_of="slow.module:COMMANDS"))
    monkeypatch.setattr(apps.cli.importlib, "import_module", interrupted)
    result = CliRunner().invoke(group, ["lazy", "train"])
    assert result.exit_code == 130, result.output
    assert result.output == "Error: interrupted before it wrote its results\n"


@pytest.mark.parametrize("command, module, option", [
    (["train"], "coseg.train", "--train-groups"), (["train"], "coseg.train", "--val-groups"),
    (["retrieval", "train"], "apps.retrieval.train", "--train-classes"),
    (["retrieval", "train"], "apps.retrieval.train", "--val-classes"),
])
def test_a_group_list_naming_none_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   command: list[str], module: str, option: str) -> None:
    """`--train-groups "$GROUPS"` with the variable unset replaced the config file's `train_split: train` and trained
    on every group, the test split's too."""
    seen = captured_config(monkeypatch, module)
    config = tmp_path / "my.yaml"
    config.write_text(f"data: {tmp_path}\ntrain_split: train\n")
    for value in ("", " ,"):
        code, output = coseg(*command, "--config", config, "--output", tmp_path / "run", option, value)
        assert code == 2 and f"Invalid value for '{option}': names none" in output, output
    assert not seen
    code, output = coseg(*command, "--config", config, "--output", tmp_path / "run", option, "a,b")
    assert code == 1 and "stand-in trainer" in output, output


@pytest.mark.slow
def test_the_other_trainers_file_is_named_in_a_fresh_process(tmp_path: Path) -> None:
    """The retrieval commands are imported when needed: `coseg train --config` of a retrieval run's file must still
    name `coseg retrieval train` when nothing has imported them yet."""
    import subprocess
    import sys

    config = tmp_path / "retrieval.yaml"
    config.write_text(f"data: {tmp_path}\nloss: soft_triple\nhead_init: pca\n")
    run = subprocess.run([sys.executable, "-m", "apps.cli", "train", "--config", str(config)], capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert run.returncode == 2 and "a config file of `coseg retrieval train`, not of this command" in run.stderr, (
        run.stdout + run.stderr)
