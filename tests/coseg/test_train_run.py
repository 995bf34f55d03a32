"""coseg train's run folder: a finished run is never silently replaced, --resume keeps the options the run was
trained with, and options out of range are refused before anything is read or written."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from apps.cli import main
from coseg.config import CosegTrainConfig
from coseg.engine import DistInfo, load_config
from coseg.train import RUN_FOLDER, train
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.reliability.test_bad_inputs import without_share

TINY = ["--members", 1, "--weights", "none", "--image-size", 64, "--groups-per-batch", 2, "--images-per-group", 2,
        "--triplet-pixels", 8, "--val-fraction", 0.34, "--device", "cpu", "--quiet"]


def coseg(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output and not isinstance(result.exception, (ValueError, RuntimeError))
    return result.exit_code, result.output


def digests(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir()) if p.is_file()}


def test_a_finished_run_is_kept_unless_resumed_or_overwritten(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    run = tmp_path / "run"
    args = ["train", "--data", data, "--output", run, "--epochs", 1, *TINY]
    assert coseg(*args)[0] == 0
    before = digests(run)

    code, output = coseg(*args)  # the same command again, e.g. from the shell history
    assert code != 0 and f"{run} already holds a run (last.pt, log.csv, best.safetensors, ...)" in output
    assert "--resume continues it, --overwrite replaces it" in output
    assert digests(run) == before

    code, output = coseg(*args[:-len(TINY)], *TINY, "--image-size", 96, "--arch", "fpn", "--resume")
    assert code != 0 and "config.yaml: --resume with options the run was not trained with" in output
    assert "image_size 64 → 96" in output and "arch 'unet' → 'fpn'" in output
    assert digests(run) == before  # config.yaml too: it still describes the checkpoints

    # how long and where it runs may change; the data folder written another way is the same folder
    assert coseg("train", "--data", f"{data}/", "--output", run, "--epochs", 2, *TINY, "--resume")[0] == 0
    assert load_config(CosegTrainConfig, run / "config.yaml").epochs == 2

    assert coseg(*args, "--overwrite")[0] == 0
    assert (run / "log.csv").read_text().splitlines()[1].startswith("1,")
    assert len((run / "log.csv").read_text().splitlines()) == 2  # a new run of one epoch


def test_an_ensemble_member_counts_as_a_run(tmp_path):
    cfg = CosegTrainConfig(data=str(tmp_path), output=str(tmp_path / "run"))
    RUN_FOLDER.check(cfg, resume=False)  # empty or missing: fine
    (tmp_path / "run" / "member0").mkdir(parents=True)
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({"epochs": 3}))  # killed before any checkpoint
    RUN_FOLDER.check(cfg, resume=False)
    (tmp_path / "run" / "member0" / "last.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"already holds a run \(member0/last.pt\)"):
        RUN_FOLDER.check(cfg, resume=False)


@pytest.mark.parametrize("option, value, message", [
    ("epochs", 0, "epochs must be >= 1, got 0"),
    ("groups_per_batch", 0, "groups_per_batch must be >= 1, got 0"),
    ("images_per_group", 0, "images_per_group must be >= 1, got 0"),
    ("triplet_pixels", 0, "triplet_pixels must be >= 1, got 0"),
    ("workers", -1, "workers must be >= 0, got -1"),
    ("minutes", -1.0, "minutes must be >= 0"),
    ("minutes", float("nan"), "minutes must be >= 0 .*, got nan"),  # was taken: no budget ever ran out
    ("val_fraction", -0.1, r"val_fraction must be in \[0, 1\), got -0.1"),
    ("val_fraction", 1.0, r"val_fraction must be in \[0, 1\), got 1.0"),
    ("image_size", 0, "image_size must be >= 32, got 0"),
    ("crop_scale", 0.0, r"crop_scale must be in \(0, 1\] .*, got 0.0"),
    ("crop_scale", 1.5, r"crop_scale must be in \(0, 1\] .*, got 1.5"),
    ("colour_jitter", -0.1, r"colour_jitter must be in \[0, 1\], got -0.1"),
    ("colour_jitter", float("nan"), r"colour_jitter must be in \[0, 1\], got nan"),
    ("paste_distractor_p", 1.5, r"paste_distractor_p must be in \[0, 1\], got 1.5"),
    ("paste_background_p", -0.5, r"paste_background_p must be in \[0, 1\], got -0.5"),
    ("paste_common_background_p", float("nan"), r"paste_common_background_p must be in \[0, 1\], got nan"),
    ("lr", -1e-3, "lr must be >= 0, got -0.001"),  # was AdamW's "Invalid learning rate", after the data scan
    ("weight_decay", -1e-4, "weight_decay must be >= 0, got -0.0001"),
])
def test_options_out_of_range_are_refused_before_anything_is_written(tmp_path, option, value, message):
    cfg = CosegTrainConfig(data=str(tmp_path / "nowhere"), output=str(tmp_path / "run"), **{option: value})
    with pytest.raises(ValueError, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, message", [
    ({"train_groups": ["a"], "train_split": "train"}, "--train-groups and --train-split train both choose the "
                                                      "training groups: give one of them"),
    ({"splits": "s.json"}, r"--splits s.json is read only for --train-split, which is not given"),
    ({"splits": "s.json", "train_groups": ["a"]}, r"--splits s.json is read only for --train-split"),
])
def test_group_options_one_of_which_would_be_ignored_are_refused(tmp_path, options, message):
    cfg = CosegTrainConfig(data=str(tmp_path / "nowhere"), output=str(tmp_path / "run"), **options)
    with pytest.raises(ValueError, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_resume_with_overwrite_is_refused(tmp_path):
    """--resume and --overwrite ask for opposite things: one of them would be ignored (--overwrite was)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("epochs: 1\n")
    cfg = CosegTrainConfig(data=str(tmp_path / "nowhere"), output=str(run), overwrite=True)
    with pytest.raises(ValueError, match="--resume continues the run in --output and --overwrite replaces it"):
        train(cfg, resume=True)
    assert [p.name for p in run.iterdir()] == ["config.yaml"]


def test_too_few_training_groups_for_a_batch_say_what_holds_them_out_before_anything_is_written(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    run = tmp_path / "run"
    args = ["train", "--data", data, "--output", run, "--epochs", 1, *without_share(TINY), "--groups-per-batch", 3]
    code, output = coseg(*args, "--val-groups", "00", "--members", 2)
    assert code != 0 and "2 training group(s), 1 held out for validation, but groups_per_batch = 3: lower " \
                         "--groups-per-batch or give fewer --val-groups" in output
    assert not run.exists()  # an ensemble's config.yaml is not written either
    code, output = coseg(*args, "--val-fraction", 0.01)
    assert code != 0 and "or --val-fraction (0 holds out none; any other fraction at least one group)" in output
    assert not run.exists()


def test_groups_per_batch_not_shared_evenly_by_the_processes_is_refused_by_its_name(tmp_path):
    cfg = CosegTrainConfig(data=str(tmp_path / "nowhere"), output=str(tmp_path / "run"), groups_per_batch=3)
    with pytest.raises(ValueError, match=r"groups_per_batch \(3\) must be a multiple of the number of processes \(2\)"):
        train(cfg, dist=DistInfo(world_size=2))
    assert not (tmp_path / "run").exists()


def test_numeric_group_names_in_a_config_file_are_names(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("train_groups: [7, 8]\nval_groups: [12]\n")  # YAML reads these as numbers
    cfg = load_config(CosegTrainConfig, path)
    assert cfg.train_groups == ["7", "8"] and cfg.val_groups == ["12"]


def test_overwrite_leaves_nothing_of_the_replaced_run_to_resume_or_report_and_is_not_saved(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    run = tmp_path / "run"
    three = ["train", "--data", data, "--output", run, "--epochs", 3, *TINY[2:], "--members", 3]
    assert coseg(*three)[0] == 0 and (run / "member2" / "last.pt").is_file()
    assert coseg("report", run, "--quiet")[0] == 0 and (run / "report_files").is_dir()
    assert "Unfinished" not in (run / "report.html").read_text()
    assert coseg(*three[:-1], 2, "--epochs", 2, "--overwrite")[0] == 0  # fewer members: member2 is not theirs
    assert sorted(p.name for p in run.glob("member*")) == ["member0", "member1"]
    assert not (run / "report.html").exists() and not (run / "report_files").exists()  # the replaced run's curves
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert "overwrite" not in saved and saved["members"] == 2
    code, output = coseg("train", "--config", run / "config.yaml")  # the saved config, reused, replaces nothing
    assert code != 0 and "already holds a run" in output

    # a replaced run killed before its first checkpoint: --resume must not take up the old one's
    (run / "member0" / "log.csv").write_text("stale\n")
    RUN_FOLDER.clear(run)
    assert not any(p.is_file() and p.name != "config.yaml" for p in run.rglob("*"))


def test_resume_where_no_run_is_refused(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    for members in (1, 3):
        code, output = coseg("train", "--data", data, "--output", tmp_path / "typo", "--epochs", 1, *TINY[2:],
                             "--members", members, "--resume")
        assert code != 0 and "nothing to resume (no config.yaml of a run there)" in output
        assert not (tmp_path / "typo").exists()


def test_member_epochs_are_shared_only_without_a_time_budget(tmp_path):
    from dataclasses import replace

    from coseg.data import find_samples
    from coseg.train import member_configs

    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    cfg = CosegTrainConfig(data=str(data), output=str(tmp_path / "run"), members=3, epochs=30, minutes=6)
    scan = find_samples(data, "auto")
    assert [(c.minutes, c.epochs) for c in member_configs(cfg, scan)] == [(2, 30)] * 3
    assert [(c.minutes, c.epochs) for c in member_configs(replace(cfg, minutes=None), scan)] == [(None, 10)] * 3


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_anew(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    run = tmp_path / "run"
    args = ["train", "--data", data, "--output", run, "--epochs", 1, *TINY[2:], "--members", 1]
    assert coseg(*args)[0] == 0
    (run / "last.pt").unlink()  # as if killed in epoch 1: config.yaml written, no checkpoint yet
    (run / "log.csv").unlink()
    code, output = coseg(*args, "--resume")
    assert code == 0, output
    assert (run / "last.pt").is_file() and (run / "log.csv").read_text().count("\n") == 2  # header + epoch 1


@pytest.mark.parametrize("members, option, value, message, exit_code", [
    (1, "--ema-decay", 1.5, "ema_decay must be in [0, 1), got 1.5", 2),  # a usage error, before the data is read
    (2, "--triplet-margin", -0.3, "triplet_margin must be > 0, got -0.3", 2),
    (2, "--encoder", "resnet-18", "unknown encoder 'resnet-18': smp has no encoder of that name", 2),
])
def test_overwrite_with_an_option_the_run_refuses_keeps_the_old_run(tmp_path, members, option, value, message,
                                                                    exit_code):
    """--overwrite replaces a run only once the new one is built: a typo in an option leaves the old run whole."""
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    run = tmp_path / "run"
    args = ["train", "--data", data, "--output", run, "--epochs", 1, *TINY[2:], "--members", members]
    assert coseg(*args)[0] == 0
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, output = coseg(*args, "--overwrite", option, value)
    assert code == exit_code and message in output, output
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("option, value, message", [
    ("triplet_miner", "semi-hard", "unknown miner 'semi-hard'"),
    ("triplet_strategy", "boundary", "strategy must be one of random, hard, got 'boundary'"),
    ("triplet_margin", -0.3, "margin must be > 0"),
])
def test_triplet_options_are_checked_with_the_triplet_loss_off(option, value, message):
    """Not recorded in config.yaml as if valid, to fail only when the saved config is reused with the loss on."""
    from coseg.train import build_objective

    with pytest.raises((ValueError, KeyError), match=re.escape(message)):
        build_objective(CosegTrainConfig(triplet_weight=0.0, **{option: value}))
    assert build_objective(CosegTrainConfig(triplet_weight=0.0)).triplet is None  # and off it stays


@pytest.mark.parametrize("members", [1, 2])
def test_the_saved_config_resumes_the_run_from_any_folder(tmp_path, monkeypatch, members):
    """config.yaml records the data, output and weights paths absolute (they were saved as typed, so
    `--config RUN/config.yaml --resume` from another folder found no data and no run)."""
    synthetic_set(tmp_path / "work" / "data", groups=3, images=2)
    weights = tmp_path / "work" / "encoder.safetensors"
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("tf_efficientnet_lite0").state_dict(), str(weights))
    monkeypatch.chdir(tmp_path / "work")
    args = ["--data", "data", "--output", "run", "--epochs", 1, *TINY, "--members", members, "--weights",
            "encoder.safetensors", "--cache-dir", "not-made-yet"]
    assert coseg("train", *args)[0] == 0
    run = tmp_path / "work" / "run"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["data"], saved["output"], saved["weights"]) == (str(tmp_path / "work" / "data"), str(run),
                                                                   str(weights))
    if members > 1:
        assert yaml.safe_load((run / "member1" / "config.yaml").read_text())["output"] == str(run / "member1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, output = coseg("train", "--config", run / "config.yaml", "--resume", "--epochs", 3)  # 2 per member of 2
    assert code == 0, output
    assert load_config(CosegTrainConfig, run / "config.yaml").epochs == 3 and not any(elsewhere.iterdir())
