"""The commands take the same option the same way: a size, count or device they cannot use, a data folder that does
not exist or an output folder that is a file is a usage error (exit code 2, one line naming the option) before
anything is written, in the co-segmentation and the retrieval commands alike."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from apps.cli import main


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def usage_error(result, option: str) -> bool:
    return result.exit_code == 2 and f"Invalid value for '{option}'" in result.output and result.exception is not None \
        and "Traceback" not in result.output


def inputs(tmp_path: Path) -> dict[str, Path]:
    """Existing paths for the options click checks: a model file (not read: the refusals come first) and folders."""
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "images").mkdir(exist_ok=True)
    (tmp_path / "export").mkdir(exist_ok=True)
    return {"model": tmp_path / "model.safetensors", "images": tmp_path / "images", "export": tmp_path / "export"}


def retrieval_commands(tmp_path: Path) -> dict[str, list]:
    p = inputs(tmp_path)
    return {
        "evaluate": ["retrieval", "evaluate", "--checkpoint", p["model"], "--data", p["images"], "--output",
                     tmp_path / "out"],
        "export": ["retrieval", "export", "--checkpoint", p["model"], "--input", p["images"], "--output",
                   tmp_path / "out"],
        "search": ["retrieval", "search", "--index", p["export"], "--query", p["images"], "--output",
                   tmp_path / "out.csv"],
    }


@pytest.mark.parametrize("command, option, value", [
    ("evaluate", "--batch-size", 0), ("evaluate", "--image-size", 0), ("evaluate", "--image-size", -32),
    ("evaluate", "--workers", -1), ("evaluate", "--report-queries", 0),
    ("export", "--batch-size", 0), ("export", "--image-size", 0), ("export", "--workers", -1),
    ("export", "--shard-size", 0),
    ("search", "--batch-size", -1), ("search", "--k", 0),
])
def test_retrieval_sizes_and_counts_must_be_positive(tmp_path: Path, command: str, option: str, value: int) -> None:
    """As in coseg evaluate and predict: refused by the option, before the output folder is made (was exit code 1
    with PyTorch's wording, after it, or with --report-queries 0 an evaluation whose report then failed)."""
    result = invoke(*retrieval_commands(tmp_path)[command], option, value)
    assert usage_error(result, option), result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.csv").exists()


def inference_commands(tmp_path: Path) -> dict[str, list]:
    p = inputs(tmp_path)
    return {
        **retrieval_commands(tmp_path),
        "coseg evaluate": ["evaluate", "--checkpoint", p["model"], "--data", p["images"], "--output", tmp_path / "out"],
        "predict": ["predict", "--checkpoint", p["model"], "--input", p["images"], "--output", tmp_path / "out"],
        "demo": ["demo", "--output", tmp_path / "out"],
        "train": ["train", "--data", p["images"], "--output", tmp_path / "out"],
        "retrieval train": ["retrieval", "train", "--data", p["images"], "--output", tmp_path / "out"],
    }


@pytest.mark.parametrize("command", ["evaluate", "export", "search", "coseg evaluate", "predict", "demo", "train",
                                     "retrieval train"])
@pytest.mark.parametrize("device, message", [("gpu", "unknown device 'gpu'"), ("mps", "device 'mps' is not supported"),
                                             ("cuda:99", "device 'cuda:99' was asked for")])
def test_a_device_the_machine_cannot_use_is_a_usage_error(tmp_path: Path, command: str, device: str,
                                                         message: str) -> None:
    """Every command refuses it the same way, before writing (demo made its output folder, and every command
    exited with code 1)."""
    result = invoke(*inference_commands(tmp_path)[command], "--device", device)
    assert usage_error(result, "--device") and message in result.output, result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("command", ["train", "retrieval train"])
def test_training_data_and_output_are_checked_as_evaluate_checks_them(tmp_path: Path, command: str) -> None:
    """A --data folder that does not exist or is a file, and an --output that is a file, from the flags or the config
    file, are usage errors naming the path before any image is read (were exit code 1, --output after the data and
    model were built: 'Not a directory: run/last.pt' or 'File exists: run')."""
    train = command.split()
    (tmp_path / "data").mkdir()
    (tmp_path / "file").write_text("")
    result = invoke(*train, "--data", tmp_path / "absent", "--output", tmp_path / "run")
    assert usage_error(result, "--data") and f"'{tmp_path / 'absent'}' does not exist" in result.output, result.output
    result = invoke(*train, "--data", tmp_path / "file", "--output", tmp_path / "run")
    assert usage_error(result, "--data") and f"'{tmp_path / 'file'}' is a file" in result.output, result.output
    result = invoke(*train, "--data", tmp_path / "data", "--output", tmp_path / "file")
    assert usage_error(result, "--output") and f"'{tmp_path / 'file'}' is a file" in result.output, result.output
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"data": str(tmp_path / "data"), "output": str(tmp_path / "file")}))
    result = invoke(*train, "--config", config)
    assert usage_error(result, "--output") and f"'{tmp_path / 'file'}' is a file" in result.output, result.output
    assert not (tmp_path / "run").exists() and (tmp_path / "file").read_text() == ""


@pytest.mark.parametrize("command", [["evaluate", "--checkpoint", "{model}", "--output", "{tmp}/out"], ["split"],
                                     ["retrieval", "evaluate", "--checkpoint", "{model}"]])
def test_an_unknown_layout_is_a_usage_error(tmp_path, command):
    """--layout bogus exited 1 from deep inside the scan (a KeyError); now 2, listing the layouts."""
    given = inputs(tmp_path)
    args = [a.format(model=given["model"], tmp=tmp_path) for a in command]
    result = invoke(*args, "--data", given["images"], "--layout", "bogus")
    assert usage_error(result, "--layout") and "'bogus' is not a layout; valid: auto, " in result.output, result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, option, value, valid", [
    (["train"], "--layout", "bogus", "auto, folders, icoseg, internet, sbcoseg"),
    (["train"], "--triplet-miner", "semi-hard", "batch_all, batch_hard, semi_hard"),
    (["train"], "--encoder-statistics", "fixed", "train, frozen"),
    (["retrieval", "train"], "--layout", "imagenet", "auto, cars, cub, folders, sop"),
    (["retrieval", "train"], "--loss", "arcface", "global, hierarchical_triplet"),
    (["retrieval", "train"], "--pooling", "max", "avg, gem"),
    (["retrieval", "train"], "--mode", "joint", "staged, end_to_end"),
])
def test_an_unknown_name_for_a_trainer_is_a_usage_error(tmp_path, command, option, value, valid):
    """A name no registry holds exited 1 from inside the library (after the data was read, for some); now the config
    check refuses it first, exit 2, with the valid names."""
    result = invoke(*command, "--data", inputs(tmp_path)["images"], "--output", tmp_path / "run", option, value)
    name = option[2:].replace("-", "_")
    assert result.exit_code == 2 and f"{name} '{value}' is unknown; valid: {valid}" in result.output, result.output
    assert not (tmp_path / "run").exists()
