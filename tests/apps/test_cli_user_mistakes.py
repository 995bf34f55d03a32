"""What a new user bringing their own data runs into: Ctrl-C, masks named differently from their images, an
--image-size the model cannot take, a relative path in their own YAML file. Each is one line naming the problem."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from apps.cli import friendly_errors, main
from coseg.models import create_model


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "best.safetensors"
    create_model("unet", weights=None, embedding_dim=8).save(path, metadata={"image_size": "64"})
    return path


def own_set(root: Path, mask_name: str = "{stem}.png") -> Path:
    """One group of 3 JPEG images with their masks in a parallel folder, named by ``mask_name``."""
    rng = np.random.default_rng(0)
    for i in range(3):
        image, mask = root / "images" / "grüne Kreise" / f"img{i}.jpg", root / "masks" / "grüne Kreise"
        image.parent.mkdir(parents=True, exist_ok=True)
        mask.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image)
        Image.fromarray(np.pad(np.full((20, 24), 255, np.uint8), ((10, 10), (12, 12)))).save(
            mask / mask_name.format(stem=image.stem))
    return root


@pytest.mark.parametrize("command, kept", [("train", "--resume continues it"),
                                           ("predict", "masks already written are kept"),
                                           ("export", "finished shards are kept"),
                                           ("evaluate", "summary.json, written last, is there only if")])
def test_ctrl_c_says_what_was_kept(command: str, kept: str) -> None:
    """Ctrl-C is not click's bare "Aborted!": one line saying what the command kept and how to go on; exit 130."""
    def interrupted() -> None:
        raise KeyboardInterrupt

    interrupted.__name__ = command
    try:
        friendly_errors(interrupted)()
    except click.ClickException as e:
        assert e.exit_code == 130 and e.message.startswith("interrupted") and kept in e.message
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C went through: click shows it as a bare 'Aborted!'")
    else:
        pytest.fail("no error")


def test_ctrl_c_during_training_is_one_line(tmp_path: Path, monkeypatch) -> None:
    def interrupt(cfg, resume):
        raise KeyboardInterrupt

    monkeypatch.setattr("coseg.train.train", interrupt)
    result = CliRunner().invoke(main, ["train", "--data", str(own_set(tmp_path / "data")), "--output",
                                       str(tmp_path / "run")])
    assert result.exit_code == 130 and "Aborted" not in result.output
    assert result.output.strip().splitlines() == [
        "Error: interrupted; the run keeps the checkpoint of its last finished epoch, if one finished (last.pt): the "
        "same command with --resume continues it"]


def test_masks_named_otherwise_are_named_before_any_work(checkpoint: Path, tmp_path: Path) -> None:
    """Masks ``img0_mask.png``, ``img2_GT.png`` for images ``img0.jpg``, ``img2.jpg`` (two suffixes: none pairs): the
    error names the data folder, the layout and the first unpaired mask (the end-of-run list never came), instead of
    "none has a ground-truth mask"."""
    data = own_set(tmp_path / "data", "{stem}_mask.png")
    last = data / "masks" / "grüne Kreise" / "img2_mask.png"
    last.rename(last.with_name("img2_GT.png"))  # two suffixes: none pairs (with one, they pair)
    result = invoke("evaluate", "--checkpoint", checkpoint, "--data", data, "--output", tmp_path / "eval", "--quiet")
    assert result.exit_code == 1
    line, = result.output.strip().splitlines()
    assert line.startswith(f"Error: {data}: none of its 3 image(s) has a mask (folders layout")
    assert "the first: mask without image: " in line and "img0_mask.png" in line
    assert not (tmp_path / "eval").exists()


def test_a_layout_that_finds_no_masks_says_so(checkpoint: Path, tmp_path: Path) -> None:
    data = own_set(tmp_path / "data")
    result = invoke("evaluate", "--checkpoint", checkpoint, "--data", data, "--layout", "icoseg", "--output",
                    tmp_path / "eval", "--quiet")
    assert result.exit_code == 1 and "(icoseg layout, as --layout says" in result.output
    assert "skipped folder: " in result.output and "masks" in result.output


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_image_size_the_model_cannot_take_names_the_option(command: str, checkpoint: Path, tmp_path: Path) -> None:
    data = own_set(tmp_path / "data")
    where = ["--data", data] if command == "evaluate" else ["--input", data / "images"]
    result = invoke(command, "--checkpoint", checkpoint, *where, "--output", tmp_path / "out", "--image-size", 70)
    assert result.exit_code == 2, result.output
    assert ("Invalid value for '--image-size': 70 is not a multiple of 32, which the model of "
            f"{checkpoint} needs (its own size: 64)") in result.output
    assert not (tmp_path / "out").exists()
    help_text = " ".join(invoke(command, "--help").output.split()).replace("co- ", "co-")  # said only "x>=1"
    assert "a co-segmentation model needs a multiple of its output stride, 32 by default" in help_text


@pytest.mark.parametrize("command", [["evaluate", "--data"], ["predict", "--input"],
                                     ["retrieval", "evaluate", "--data"], ["retrieval", "export", "--input"]])
def test_a_runs_training_state_given_as_the_model_file_names_the_model_files(command: list[str],
                                                                               tmp_path: Path) -> None:
    # was: "last.pt is not a safetensors model file (header length 5784… is over 100000000 bytes) … pickled .pt/.pth
    # files are refused", which does not say which file to give
    state = tmp_path / "run" / "last.pt"
    state.parent.mkdir()
    state.write_bytes(b"PK\x03\x04")
    result = invoke(*command, tmp_path, "--checkpoint", state, "--output", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert (f"Invalid value for '--checkpoint': {state} is a run's training state (what --resume continues from), "
            "not a model file: give best.safetensors or last.safetensors from the same folder") in result.output
    assert not (tmp_path / "out").exists()


def test_a_relative_data_path_in_the_config_file_is_named_with_the_file(tmp_path: Path, monkeypatch) -> None:
    own_set(tmp_path / "data")
    config = tmp_path / "my.yaml"
    config.write_text(yaml.safe_dump({"data": "data", "image_size": 64}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = invoke("train", "--config", config, "--output", tmp_path / "run")
    assert result.exit_code == 2
    assert (f"Directory 'data' does not exist. (data: data in {config}; a relative path there is read from the "
            f"current folder, {elsewhere})") in result.output
    monkeypatch.chdir(tmp_path)  # from the file's folder it is found; a flag's own path is not blamed on the file
    result = invoke("train", "--config", config, "--data", tmp_path / "nowhere", "--output", tmp_path / "run")
    assert result.exit_code == 2 and "does not exist." in result.output and str(config) not in result.output


def test_training_names_its_validation_groups(tmp_path: Path, monkeypatch) -> None:
    """The groups carved for validation are named (config.yaml keeps val_groups empty), so the user evaluates on
    groups the model never saw rather than on those; a long list is cut short."""
    from types import SimpleNamespace

    fit = SimpleNamespace(history=[{"epoch": 1}], epochs_run=1, seconds=6.0, images_per_s=20.0, stopped_by_time=False,
                          best_metric=50.0, best_epoch=1)
    groups = ["grüne Kreise", *(f"g{i:02d}" for i in range(11))]
    for val_groups, shown in ((groups[:1], "validation group(s): grüne Kreise\n"),
                              (groups, "validation group(s): grüne Kreise, g00, g01, g02, g03, g04, g05, g06, "
                                       "g07, g08, … (12 in all)\n")):
        monkeypatch.setattr("coseg.train.train", lambda cfg, resume: SimpleNamespace(
            is_main=True, members=[], fit=fit, val_groups=val_groups, skipped=[], problems=[], output=tmp_path / "run"))
        result = invoke("train", "--data", own_set(tmp_path / "data"), "--output", tmp_path / "run")
        assert result.exit_code == 0 and shown in result.output, result.output
