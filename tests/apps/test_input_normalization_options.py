"""``--input-mean`` / ``--input-std`` of both trainers: read from the command line and the YAML file, checked (naming
the option), given to the model and saved in its file, so that evaluation, prediction and export use them; a resume
keeps the run's own."""
from __future__ import annotations

import math

import pytest
import segmentation_models_pytorch as smp
import torch
import yaml
from click.testing import CliRunner
from safetensors.torch import save_file

from apps.cli import main
from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.model import create_retrieval_model, load_retrieval_model
from coseg.config import CosegTrainConfig
from coseg.engine import ConfigError, load_config
from coseg.models import create_model, load_model
from tests.apps.retrieval_runs import BACKBONE, tiny_set
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.coseg.test_train_run import TINY

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
CONFIGS = [CosegTrainConfig, RetrievalTrainConfig]


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def assert_normalization(model: torch.nn.Module, mean: list[float], std: list[float]) -> None:
    assert model.config["mean"] == pytest.approx(mean) and model.config["std"] == pytest.approx(std)
    assert model.mean.flatten().tolist() == pytest.approx(mean) and model.std.flatten().tolist() == pytest.approx(std)


@pytest.mark.parametrize("cls", CONFIGS)
def test_read_from_the_config_file_and_the_command_line(cls, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("input_mean: [0.5, 0.4, 0.3]\ninput_std: 0.1,0.1,0.1\n")
    cfg = load_config(cls, path, {"input_std": "0.2, 0.25, 0.5"})  # the flag beats the file
    assert cfg.input_mean == MEAN and cfg.input_std == STD
    assert cls().input_mean == [] and cls().input_std == []  # unset: what the weights expect


@pytest.mark.parametrize("cls", CONFIGS)
@pytest.mark.parametrize("name, value, message", [
    ("input_mean", "0.5,0.5", r"input_mean must be 3 finite numbers, .* got \[0.5, 0.5\]"),
    ("input_mean", [0.1, 0.2, 0.3, 0.4], r"input_mean must be 3 finite numbers"),
    ("input_std", "0.5,0,0.5", r"input_std must be 3 finite numbers > 0, .* got \[0.5, 0.0, 0.5\]"),
    ("input_std", [0.5, -1, 0.5], r"input_std must be 3 finite numbers > 0"),
    ("input_std", "0.5,nan,0.5", r"'input_std' must be a finite number, got 'nan'"),
    ("input_mean", "0.5,inf,0.5", r"'input_mean' must be a finite number, got 'inf'"),
    ("input_mean", "a,b,c", r"'input_mean' must be float, got 'a'"),
])
def test_bad_values_are_refused_naming_the_option(cls, name, value, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        load_config(cls, None, {name: value})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({name: value}))
    with pytest.raises(ConfigError, match=message):
        load_config(cls, path)


@pytest.mark.parametrize("cls", CONFIGS)
def test_bad_values_given_in_python_are_refused(cls):
    with pytest.raises(ConfigError, match=r"input_std must be 3 finite numbers > 0, .* got \[1.0, 1.0, nan\]"):
        cls(input_std=[1.0, 1.0, math.nan])


@pytest.mark.parametrize("command", [["train"], ["retrieval", "train"]])
def test_the_command_line_refuses_them_as_a_usage_error_before_writing(command, tmp_path):
    code, output = invoke(*command, "--data", tmp_path, "--output", tmp_path / "run", "--input-mean", "0.5,0.5")
    assert code == 2 and "input_mean must be 3 finite numbers" in output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad", [{"mean": (0.5, 0.5)}, {"std": (0.5, 0.0, 0.5)}, {"mean": (0.5, math.inf, 0.5)}])
def test_the_model_builders_refuse_bad_values_naming_them(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=rf"^{name} must be 3 finite numbers"):
        create_model("unet", weights=None, **bad)
    with pytest.raises(ValueError, match=rf"^{name} must be 3 finite numbers"):
        create_retrieval_model(BACKBONE, weights=None, **bad)


def test_coseg_train_with_a_local_smp_encoder_file_saves_the_given_values(tmp_path, no_network):
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    weights = tmp_path / "resnet18.safetensors"
    save_file(smp.encoders.get_encoder("resnet18", weights=None).state_dict(), weights)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"input_mean": MEAN}))
    run = tmp_path / "run"
    args = ["train", "--data", data, "--output", run, "--epochs", 1, *TINY, "--encoder", "resnet18", "--weights",
            weights, "--no-semantic-prior"]
    code, output = invoke(*args, "--config", config, "--input-std", ",".join(map(str, STD)))
    assert code == 0, output
    assert yaml.safe_load((run / "config.yaml").read_text())["input_mean"] == MEAN
    for name in ("best.safetensors", "last.safetensors"):  # what coseg evaluate and predict load
        assert_normalization(load_model(run / name), MEAN, STD)

    code, output = invoke(*args, "--config", config, "--input-std", "0.5,0.5,0.5", "--resume")
    assert code != 0 and f"input_std {STD!r} → [0.5, 0.5, 0.5]" in output  # as any option shaping the model
    code, output = invoke("train", "--config", run / "config.yaml", "--epochs", 2, "--resume")
    assert code == 0, output
    assert_normalization(load_model(run / "last.safetensors"), MEAN, STD)


def test_coseg_train_without_them_keeps_what_the_encoder_expects(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    run = tmp_path / "run"
    assert invoke("train", "--data", data, "--output", run, "--epochs", 1, *TINY)[0] == 0
    assert_normalization(load_model(run / "best.safetensors"), [0.5] * 3, [0.5] * 3)  # tf_efficientnet_lite0's


def test_retrieval_train_saves_the_given_values(tmp_path, no_network):
    data = tiny_set(tmp_path / "data")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"backbone": BACKBONE, "weights": "none", "image_size": 32, "embedding_dim": 8,
                                      "classes_per_batch": 2, "samples_per_class": 2, "val_fraction": 0.34,
                                      "input_std": STD}))
    run = tmp_path / "run"
    code, output = invoke("retrieval", "train", "--config", config, "--data", data, "--output", run, "--epochs", 1,
                          "--input-mean", ",".join(map(str, MEAN)), "--quiet", "--device", "cpu")
    assert code == 0, output
    for name in ("best.safetensors", "last.safetensors"):  # what retrieval evaluate and export load
        assert_normalization(load_retrieval_model(run / name), MEAN, STD)
    code, output = invoke("retrieval", "train", "--config", run / "config.yaml", "--input-mean", "0.5,0.5,0.5",
                          "--resume")
    assert code != 0 and f"input_mean {MEAN!r} → [0.5, 0.5, 0.5]" in output
