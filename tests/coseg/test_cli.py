import csv
import json

import pytest
import torch
import yaml
from click.testing import CliRunner

from apps.cli import main
from coseg.models import create_model
from tests.coseg.pipeline_fixtures import synthetic_set


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


@pytest.mark.slow
def test_train_evaluate_predict_resume(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=3, images=4)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"epochs": 1, "members": 1, "weights": "none", "image_size": 64,
                                   "groups_per_batch": 2, "images_per_group": 2, "val_fraction": 0.34,
                                   "triplet_pixels": 8}))
    run = tmp_path / "run"
    r = invoke("train", "--config", cfg, "--data", data, "--output", run, "--epochs", 2, "--quiet")
    assert r.exit_code == 0, r.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["epochs"] == 2 and saved["image_size"] == 64 and saved["weights"] == "none"  # flag beats file
    for name in ("best.safetensors", "last.safetensors", "last.pt", "log.csv"):
        assert (run / name).is_file()
    assert "outputs:" in r.output

    r = invoke("train", "--config", cfg, "--data", data, "--output", run, "--epochs", 3, "--resume", "--quiet")
    assert r.exit_code == 0, r.output
    assert [row["epoch"] for row in csv.DictReader(open(run / "log.csv"))] == ["1", "2", "3"]
    assert "trained epoch 3, " in r.output and "min with the earlier ones" in r.output  # not "trained 3 epoch(s)"
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert float(rows[0]["lr_encoder"]) == pytest.approx(float(rows[0]["lr"]) * 0.1)  # encoder_lr_scale
    config = (run / "config.yaml").stat().st_ino
    for epochs in (3, 2):  # a shorter run is no shorter: its config.yaml still says 3 epochs, as trained
        r = invoke("train", "--config", cfg, "--data", data, "--output", run, "--epochs", epochs, "--resume",
                   "--quiet")
        assert r.exit_code == 0 and "nothing left to train: the run had reached epoch 3 (a larger --epochs trains on)" \
            in r.output, r.output
        assert (run / "config.yaml").stat().st_ino == config  # not written again

    r = invoke("evaluate", "--checkpoint", run / "best.safetensors", "--data", data, "--output", tmp_path / "ev",
               "--quiet")
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert 0 <= summary["P"] <= 100 and 0 <= summary["J"] <= 100 and len(summary["per_group"]) == 3
    assert "mean" in r.output

    # --flip, --refine-iterations, --group-statistics, the edge filter and colour cut options reach the evaluation:
    # the same scores as evaluate_samples with them (the edge filter and the colour cut are on by default)
    from coseg.data import find_samples
    from coseg.evaluate import evaluate_samples
    from coseg.models import EdgeFilter, GroupColourCut, GroupRefinement, GroupStatistics, load_model

    model = load_model(run / "best.safetensors").to(memory_format=torch.channels_last)  # as the CLI loads it
    samples = find_samples(data, "auto").samples
    seen = []
    for options, expected_options in (
            ([], dict(edges=EdgeFilter(), colour=GroupColourCut())),
            (["--flip", "--refine-iterations", 1, "--no-colour-cut"], dict(refinement=GroupRefinement(1, 2.0),
                                                                            flip=True, edges=EdgeFilter())),
            (["--edge-radius", 0.2, "--edge-eps", 0.01, "--no-colour-cut"], dict(edges=EdgeFilter(0.2, 0.01))),
            (["--edge-radius", 0, "--no-colour-cut"], dict(edges=None)),
            (["--colour-iterations", 1], dict(edges=EdgeFilter(), colour=GroupColourCut(1))),
            (["--colour-scale", 1], dict(edges=EdgeFilter(), colour=GroupColourCut(scale=1))),
            (["--group-statistics", 2, "--no-colour-cut"], dict(edges=EdgeFilter(), statistics=GroupStatistics(2)))):
        r = invoke("evaluate", "--checkpoint", run / "best.safetensors", "--data", data, "--output",
                   tmp_path / "ev_options", "--quiet", *options)
        assert r.exit_code == 0, r.output
        expected = evaluate_samples(model, samples, 64, torch.device("cpu"), progress=False, **expected_options).summary
        summary = json.loads((tmp_path / "ev_options" / "summary.json").read_text())
        assert summary["J"] == pytest.approx(expected["J"], abs=1e-3), options
        assert summary["P"] == pytest.approx(expected["P"], abs=1e-3), options
        if "--colour-iterations" not in options:  # one GrabCut round may give a small model's masks as three do
            seen.append(summary["P"])
    assert len(set(seen)) == 6  # each other set of options changed the masks

    r = invoke("predict", "--checkpoint", run / "best.safetensors", "--input", data / "images", "--output",
               tmp_path / "pred", "--quiet")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "pred").rglob("*.png"))) == 12
    r = invoke("predict", "--checkpoint", run / "best.safetensors", "--input", data / "images", "--output",
               tmp_path / "pred_adapted", "--group-statistics", 8, "--quiet")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "pred_adapted").rglob("*.png"))) == 12


def test_train_with_weight_average_saves_the_average(tmp_path):
    from coseg.models import load_model

    data = synthetic_set(tmp_path / "data", groups=3, images=4)
    run = tmp_path / "run"
    r = invoke("train", "--data", data, "--output", run, "--epochs", 1, "--members", 1, "--val-fraction", 0.34,
               "--weights", "none",
               "--image-size", 64, "--groups-per-batch", 2, "--images-per-group", 2, "--triplet-pixels", 8,
               "--ema-decay", 0.5, "--quiet")
    assert r.exit_code == 0, r.output
    assert yaml.safe_load((run / "config.yaml").read_text())["ema_decay"] == 0.5
    state = torch.load(run / "last.pt", weights_only=True)
    saved = load_model(run / "last.safetensors").state_dict()
    averaged = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    assert saved.keys() == averaged.keys()
    for k, v in saved.items():
        torch.testing.assert_close(v, averaged[k], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(v, state["model"][k]) for k, v in saved.items())  # the average, not the last step


def test_config_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nlearning_rate: 0.1\n")
    r = invoke("train", "--config", bad, "--data", tmp_path)
    assert r.exit_code == 2
    assert "unknown key(s) learning_rate" in r.output and "valid keys:" in r.output
    bad.write_text("epochs: many\n")
    r = invoke("train", "--config", bad, "--data", tmp_path)
    assert r.exit_code == 2 and "'epochs' must be int" in r.output
    r = invoke("train", "--data", tmp_path, "--epochs", "0")
    assert r.exit_code == 2 and "epochs must be >= 1, got 0" in r.output
    r = invoke("train", "--data", tmp_path, "--val-fraction", "1")
    assert r.exit_code == 2 and "val_fraction must be in [0, 1), got 1.0" in r.output
    r = invoke("train", "--data", tmp_path, "--image-size", "33")
    assert r.exit_code == 2 and "image_size must be a multiple of 32, got 33" in r.output
    bad.write_text("!!python/object/apply:os.system ['touch pwned']\n")
    r = invoke("train", "--config", bad, "--data", tmp_path)
    assert r.exit_code != 0 and not (tmp_path / "pwned").exists()


def test_every_command_has_help():
    for cmd in ("train", "evaluate", "predict", "ensemble", "demo", "split"):
        r = invoke(cmd, "--help")
        assert r.exit_code == 0 and "--" in r.output
    r = invoke("train", "--help")
    assert "--triplet-weight" in r.output and "IS-Triplet" in r.output


def test_version_is_the_installed_package_s():
    from importlib.metadata import version

    r = invoke("--version")  # what a bug report asks for
    assert r.exit_code == 0 and r.output == f"coseg, version {version('coseg-metric')}\n"


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_sizes_and_counts_must_be_positive(tmp_path, command):
    """A zero or negative --image-size, --batch-size or --workers, or image size in the model file's metadata,
    is a one-line error, not a traceback from deep inside the inference."""
    data = synthetic_set(tmp_path / "data", groups=1, images=2, size=32)
    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8).save(model, metadata={"image_size": "0"})
    source = ["--input", data / "images"] if command == "predict" else ["--data", data]
    base = [command, "--checkpoint", model, *source, "--output", tmp_path / "out", "--device", "cpu", "--quiet"]
    for option, value in (("--image-size", 0), ("--image-size", -32), ("--batch-size", 0), ("--batch-size", -1),
                          ("--workers", -1)):
        result = CliRunner().invoke(main, [str(a) for a in base + [option, value]])
        assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output, result.output
    result = CliRunner().invoke(main, [str(a) for a in base])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
    assert f"{model}: its metadata 'image_size' must be a positive integer, got '0'" in result.output


def test_split_writes_a_stratified_split_that_train_and_evaluate_resolve(tmp_path):
    from coseg.data import find_samples, make_synthetic_coseg
    from coseg.selection import choose_groups

    data = make_synthetic_coseg(tmp_path / "sb", num_groups=10, images_per_group=2, size=32, seed=0, layout="sbcoseg")
    r = invoke("split", "--data", data, "--test-fraction", 0.5, "--seed", 4)
    assert r.exit_code == 0, r.output
    written = data / "splits.json"
    splits = json.loads(written.read_text())
    assert "5 training and 5 test group(s)" in r.output and "sbcoseg" in r.output
    assert sorted(g.split("/")[0] for g in splits["test"]) == ["ECFB", "MH", "Normal", "SD", "TR"]
    scan = find_samples(data)
    assert sorted(splits["train"] + splits["test"]) == scan.groups
    assert choose_groups(scan, written, "test", []) == splits["test"]  # what `evaluate --split test` reads

    before = written.read_bytes()
    r = invoke("split", "--data", data, "--seed", 5)
    assert r.exit_code != 0 and "exists; choose another --output" in r.output and written.read_bytes() == before
    other = tmp_path / "other.json"
    assert invoke("split", "--data", data, "--test-fraction", 0.5, "--seed", 4, "--output", other).exit_code == 0
    assert json.loads(other.read_text()) == splits  # the same seed draws the same split
    r = invoke("split", "--data", data, "--test-fraction", 1, "--output", tmp_path / "x.json")
    assert r.exit_code != 0 and not (tmp_path / "x.json").exists()


def test_split_keeps_an_internet_subset_with_its_full_class(tmp_path):
    import shutil

    from coseg.data import make_synthetic_coseg

    data = make_synthetic_coseg(tmp_path / "Internet", num_groups=4, images_per_group=2, size=16, layout="internet",
                                group_names=["Airplane", "Car", "Horse", "Bird"])
    shutil.copytree(data / "Data" / "Airplane", data / "Data" / "Airplane100")  # Airplane100 ⊂ Airplane
    sides = []
    for seed in range(6):
        written = tmp_path / f"{seed}.json"
        r = invoke("split", "--data", data, "--test-fraction", 0.4, "--seed", seed, "--output", written)
        assert r.exit_code == 0, r.output
        splits = json.loads(written.read_text())
        sides.append("Airplane" in splits["test"])
        assert ("Airplane" in splits["test"]) == ("Airplane100" in splits["test"]), (seed, splits)
    assert len(set(sides)) == 2  # drawn to either side


@pytest.mark.parametrize("option, value", [("--refine-iterations", -1), ("--refine-weight", -0.5)])
def test_negative_refinement_options_are_refused_by_the_option(tmp_path, option, value):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"")
    for command in (["predict", "--input", tmp_path, "--output", tmp_path / "p"],
                    ["evaluate", "--data", tmp_path, "--output", tmp_path / "e"]):
        r = invoke(*command, "--checkpoint", model, option, value)
        assert r.exit_code == 2 and f"Invalid value for '{option}'" in r.output, r.output
