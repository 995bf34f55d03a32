"""The lines a training command ends with: where every output went (a staged retrieval run's fine-tuning stage in
OUTPUT/finetune/), and --help texts stating one default per option."""
from __future__ import annotations

from click.testing import CliRunner

from apps.cli import main
from tests.apps.retrieval_runs import BACKBONE, tiny_set


def invoke(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


def test_staged_retrieval_run_names_its_finetune_folder(tmp_path):
    data = tiny_set(tmp_path / "data")
    run = tmp_path / "run"
    r = invoke("retrieval", "train", "--data", data, "--output", run, "--backbone", BACKBONE, "--weights", "none",
               "--image-size", 32, "--embedding-dim", 8, "--epochs", 1, "--finetune-epochs", 1,
               "--classes-per-batch", 2, "--samples-per-class", 2, "--val-fraction", 0.34, "--device", "cpu",
               "--quiet")
    assert r.exit_code == 0, r.output
    assert (run / "finetune" / "last.safetensors").is_file()
    outputs = [line for line in r.output.splitlines() if line.startswith("outputs:")]
    assert len(outputs) == 1 and "finetune/" in outputs[0], r.output


def test_head_only_retrieval_run_names_no_finetune_folder(tmp_path):
    data = tiny_set(tmp_path / "data")
    run = tmp_path / "run"
    r = invoke("retrieval", "train", "--data", data, "--output", run, "--backbone", BACKBONE, "--weights", "none",
               "--image-size", 32, "--embedding-dim", 8, "--epochs", 1, "--classes-per-batch", 2,
               "--samples-per-class", 2, "--val-fraction", 0.34, "--device", "cpu", "--quiet")
    assert r.exit_code == 0, r.output
    assert "finetune" not in r.output and not (run / "finetune").exists()


def test_training_help_states_one_default_per_option():
    """An option whose help already tells what leaving it unset means (e.g. --splits: <data>/splits.json) is not
    also marked "[default: unset]", which reads as a second, contradicting default."""
    from apps.cli import train
    from apps.retrieval.cli import train as retrieval_train

    for command in (train, retrieval_train):
        for param in command.params:
            text = (param.help or "").lower()
            assert not ("[default: unset]" in text and text.count("default") > 1), (command.name, param.name, text)
        data = next(p for p in command.params if p.name == "data")  # required: it has no default, set or unset
        assert "required" in data.help and "default" not in data.help, data.help
    splits = next(p for p in train.params if p.name == "splits")
    assert "<data>/splits.json" in splits.help and "unset" not in splits.help


def test_a_resume_with_nothing_left_names_the_option_that_trains_on():
    from apps.cli import fit_summary
    from coseg.engine import FitResult

    done = FitResult(epochs_run=5, best_epoch=2, best_metric=None)
    assert fit_summary(done) == "nothing left to train: the run had reached epoch 5 (a larger --epochs trains on)"
    done.stopped_by_time = True
    assert fit_summary(done, ("--finetune-epochs", "--finetune-minutes")) == (
        "nothing left to train: the run had reached epoch 5 and its time budget (a larger --finetune-minutes trains "
        "on)")
