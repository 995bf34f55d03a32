"""Command-line options one of which would be ignored, or whose value would do something else than asked, are
refused as usage errors (exit 2) before anything is loaded; files already there are not replaced unasked."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import main
from coseg.models import EdgeFilter, GroupColourCut, GroupRefinement, create_model


def coseg(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.mark.parametrize("options, message", [
    (["--groups", "a", "--split", "test"], "--groups and --split test both choose the groups to evaluate: give one of "
                                           "them"),
    (["--splits", "s.json"], "--splits s.json is read only for --split, which is not given: add it (the key of the "
                             "groups to evaluate in that file), or leave --splits out"),
])
def test_evaluate_group_options_one_of_which_would_be_ignored(tmp_path: Path, options: list, message: str) -> None:
    (tmp_path / "s.json").write_text('{"test": ["a"]}')
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"")  # never read: the options are refused first
    code, output = coseg("evaluate", "--checkpoint", model, "--data", tmp_path, "--output", tmp_path / "out",
                         *[tmp_path / o if o == "s.json" else o for o in options])
    assert code == 2 and " ".join(message.split()) in " ".join(output.replace(str(tmp_path) + "/", "").split())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, message", [
    (["--train-groups", "a", "--train-split", "test"], "--train-groups and --train-split test both choose the "
                                                       "training groups: give one of them"),
    (["--splits", "s.json"], "--splits s.json is read only for --train-split"),
])
def test_train_group_options_one_of_which_would_be_ignored(tmp_path: Path, options: list, message: str) -> None:
    """A usage error as evaluate's (was: exit 1)."""
    (tmp_path / "s.json").write_text('{"test": ["a"]}')
    code, output = coseg("train", "--data", tmp_path, "--output", tmp_path / "out",
                         *[tmp_path / o if o == "s.json" else o for o in options])
    assert code == 2 and " ".join(message.split()) in " ".join(output.replace(str(tmp_path) + "/", "").split())
    assert not (tmp_path / "out").exists()


def test_ensemble_does_not_replace_an_existing_file_unless_asked(tmp_path: Path) -> None:
    member, other = tmp_path / "member.safetensors", tmp_path / "other.safetensors"
    for path in (member, other):
        create_model("unet", weights=None, embedding_dim=8, group_levels=0).save(path, {"image_size": "64"})
    before = member.read_bytes()
    code, output = coseg("ensemble", member, other, "--output", member)  # e.g. a slip of the shell history
    assert code == 1 and f"{member} exists; --overwrite replaces it, or choose another --output" in output
    assert member.read_bytes() == before
    joined = tmp_path / "joined.safetensors"
    joined.write_bytes(b"an older ensemble")
    assert coseg("ensemble", member, other, "--output", joined)[0] == 1
    assert joined.read_bytes() == b"an older ensemble"
    code, output = coseg("ensemble", member, other, "--output", joined, "--overwrite")
    assert code == 0 and "an ensemble of 2 model(s)" in output and joined.read_bytes() != b"an older ensemble"


@pytest.mark.parametrize("minutes", ["0", "-1"])
def test_demo_refuses_a_budget_that_is_not_positive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     minutes: str) -> None:
    """0 minutes would mean no time budget to the trainer: the demo's 1000 epochs, hours on a CPU."""
    from coseg import demo

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo started")

    monkeypatch.setattr(demo, "run_demo", never)
    code, output = coseg("demo", "--output", tmp_path / "demo", "--minutes", minutes)
    assert code == 2 and "Invalid value for '--minutes'" in output
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("option, value", [("--edge-eps", "nan"), ("--refine-weight", "nan"),
                                           ("--colour-scale", "nan"), ("--edge-radius", "nan"),
                                           ("--group-statistics", "inf")])
def test_inference_options_that_are_not_finite_are_usage_errors(tmp_path: Path, command: str, option: str,
                                                                value: str) -> None:
    """click's FloatRange lets NaN through: --edge-eps nan and --refine-weight nan predicted (NaN masks), and
    --colour-scale inf crashed with an OverflowError."""
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"")  # never read: the option is refused first
    source = ["--input", tmp_path] if command == "predict" else ["--data", tmp_path]
    code, output = coseg(command, "--checkpoint", model, *source, "--output", tmp_path / "out", option, value)
    assert code == 2 and f"Invalid value for '{option}': {value} is not a finite number" in output, output


@pytest.mark.parametrize("build", [
    lambda: EdgeFilter(eps=float("nan")),
    lambda: GroupRefinement(1, weight=float("nan")),
    lambda: GroupColourCut(scale=float("inf")),
], ids=["edge eps", "refinement weight", "colour scale"])
def test_inference_steps_refuse_values_that_are_not_finite(build) -> None:
    with pytest.raises(ValueError, match="must be a finite number"):
        build()
