"""``coseg retrieval train``'s run folder: a finished run (its fine-tuning stage too) is never silently replaced,
nor lost to a replacing run that fails or is interrupted before it trains, --resume keeps the options the run was
trained with, and class names in a config file are names."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from apps.cli import main
from apps.retrieval import train as train_module
from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.train import FINETUNE_DIR, train
from coseg.engine import load_config
from coseg.report.build import build_report
from tests.apps.retrieval_files import write_class_folders
from tests.apps.retrieval_runs import tiny_config, tiny_set
from tests.reliability.test_bad_inputs import TINY_RETRIEVAL, without_share


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_set(tmp_path_factory.mktemp("retrieval") / "data")


def retrieval(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["retrieval", *map(str, args)])
    assert "Traceback" not in result.output and not isinstance(result.exception, (ValueError, RuntimeError))
    return result.exit_code, result.output


def digests(run: Path) -> dict[str, str]:
    return {p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


def refused(run: Path, *args) -> str:
    """The output of ``coseg retrieval ARGS``, which must fail and leave every file of ``run`` as it was."""
    before = digests(run)
    code, output = retrieval(*args)
    assert code != 0 and digests(run) == before
    return output


def epochs_logged(folder: Path) -> list[int]:
    with open(folder / "log.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_a_finished_run_is_kept_unless_resumed_or_overwritten(data, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", data, "--output", run, "--epochs", 1, *TINY_RETRIEVAL]
    assert retrieval(*args)[0] == 0
    output = refused(run, *args)  # the same command again, e.g. from the shell history
    assert f"{run} already holds a run (last.pt, log.csv, best.safetensors, ...)" in output
    assert "--resume continues it, --overwrite replaces it" in output
    # config.yaml is kept too: it still describes the checkpoints
    output = refused(run, *args, "--image-size", 48, "--loss", "soft_triple", "--resume")
    assert "config.yaml: --resume with options the run was not trained with" in output
    assert "image_size 32 → 48" in output and "loss 'triplet_margin' → 'soft_triple'" in output

    # how long and where it runs may change; the data folder written another way is the same folder
    resumed = ["train", "--data", f"{data}/", "--output", run, "--epochs", 2, *TINY_RETRIEVAL, "--threads", 1,
               "--batch-size", 8, "--resume"]
    assert retrieval(*resumed)[0] == 0
    assert epochs_logged(run) == [1, 2]
    saved = load_config(RetrievalTrainConfig, run / "config.yaml")
    assert saved.epochs == 2 and saved.threads == 1 and saved.batch_size == 8

    assert retrieval(*args, "--overwrite")[0] == 0
    assert epochs_logged(run) == [1]  # a new run of one epoch


def test_a_fine_tuning_stage_counts_as_a_run(data, tmp_path):
    run = tmp_path / "run"
    (run / FINETUNE_DIR).mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"epochs": 3}))  # killed before any checkpoint
    (run / FINETUNE_DIR / "last.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"already holds a run \(finetune/last.pt\)"):
        train(tiny_config(data, run))
    assert (run / FINETUNE_DIR / "last.pt").read_bytes() == b""


def test_overwrite_drops_the_replaced_runs_fine_tuning_stage_and_report(data, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(data, run, epochs=1, finetune_epochs=1))
    build_report(run, progress=False)
    train(tiny_config(data, run, epochs=1, overwrite=True))
    assert not (run / FINETUNE_DIR / "last.pt").exists()
    assert not (run / "report.html").exists() and not (run / "report_files").exists()  # the replaced run's curves
    # resumed with a longer head stage and a fine-tuning stage added: the head stage goes on, then fine-tunes
    result = train(tiny_config(data, run, epochs=2, finetune_epochs=1), resume=True)
    assert epochs_logged(run) == [1, 2] and epochs_logged(run / FINETUNE_DIR) == [1]
    assert result.stages["head"].epochs_run == 2 and result.stages["finetune"].epochs_run == 1


def test_numeric_class_names_in_a_config_file_are_names(tmp_path):
    names = [str(i) for i in range(1, 9)]
    data = write_class_folders(tmp_path / "data", names, per_class=4)
    config = tmp_path / "run.yaml"
    config.write_text("train_classes: [1, 2, 3, 4, 5, 6]\nval_classes: [5, 6]\n")  # YAML reads these as numbers
    cfg = load_config(RetrievalTrainConfig, config, {"pool_stages": "3, -1"})
    assert cfg.train_classes == names[:6] and cfg.val_classes == ["5", "6"] and cfg.pool_stages == [3, -1]
    run = tmp_path / "run"
    code, output = retrieval("train", "--config", config, "--data", data, "--layout", "folders", "--output", run,
                             "--epochs", 1, *without_share(TINY_RETRIEVAL))
    assert code == 0, output
    assert "best validation MAP@R" in output and "(2 held-out class(es))" in output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train_classes"] == names[:6] and saved["val_classes"] == ["5", "6"]


@pytest.fixture(scope="module")
def single_images(tmp_path_factory) -> Path:
    """One image per class: head_init class_whiten on a single view has no within-class scatter to whiten."""
    return tiny_set(tmp_path_factory.mktemp("retrieval") / "single", per_class=1)


def test_a_replacing_run_that_fails_or_is_interrupted_before_training_leaves_the_old_run_whole(
        single_images, tmp_path, monkeypatch):
    run, cache = tmp_path / "run", tmp_path / "cache"
    options = ["--data", single_images, "--output", run, "--epochs", 1, *TINY_RETRIEVAL, "--val-fraction", 0,
               "--samples-per-class", 1, "--loss", "soft_triple", "--feature-views", 1, "--cache-dir", cache]
    assert retrieval("train", *options, "--finetune-epochs", 1)[0] == 0
    assert (run / FINETUNE_DIR / "last.pt").is_file()
    cached = digests(cache)
    for bad in (["--backbone", "no_such_net"], ["--loss", "no_such_loss"], ["--miner", "no_such_miner"],
                ["--loss", "soft_triple", "--beta", 0.3],
                ["--head-init", "class_whiten"]):  # refused once the features are computed: was, the old run deleted
        refused(run, "train", *options, *bad, "--overwrite")
    assert digests(cache) == cached

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "cached_features", interrupted)
    before = digests(run)
    for mode in ("staged", "end_to_end"):  # Ctrl-C while the new run computes its backbone features
        with pytest.raises(KeyboardInterrupt):
            train(tiny_config(single_images, run, mode=mode, overwrite=True, val_fraction=0.0, samples_per_class=1,
                              loss="soft_triple"))
        assert digests(run) == before


def test_resume_with_overwrite_is_refused(data, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", data, "--output", run, "--epochs", 1, *TINY_RETRIEVAL]
    assert retrieval(*args)[0] == 0
    output = refused(run, *args, "--epochs", 2, "--resume", "--overwrite")  # was: resumed, ignoring --overwrite
    assert "--resume continues the run in --output and --overwrite replaces it: give one of them" in output


def test_resume_cannot_lengthen_a_head_stage_that_fine_tuning_started_from(data, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", data, "--output", run, *TINY_RETRIEVAL, "--finetune-epochs", 1]
    assert retrieval(*args, "--epochs", 1)[0] == 0
    # was: the head stage did not go on, but config.yaml said --epochs 2
    output = refused(run, *args, "--epochs", 2, "--resume")
    assert f"{run / FINETUNE_DIR}: the fine-tuning stage has started from the head stage's best model" in output
    assert "(--epochs 1 → 2)" in output
    assert retrieval(*args, "--epochs", 1, "--finetune-epochs", 2, "--resume")[0] == 0
    assert epochs_logged(run) == [1] and epochs_logged(run / FINETUNE_DIR) == [1, 2]


@pytest.mark.parametrize("first, second, promoted", [("52.34561", "52.34564", False), ("52.3456", "52.3457", True),
                                                     ("52.3457", "52.3456", False)])
def test_the_fine_tuned_model_wins_only_on_a_higher_logged_score(tmp_path, first, second, promoted):
    """MAP@R equal to log.csv's 4 decimals is a tie, which keeps the first stage's model, as a tie between epochs
    keeps the earlier one (was: the fine-tuned model won on digits the log does not show)."""
    import torch

    from apps.retrieval.train import promote_finetuned
    from coseg.models.checkpoint import write_checkpoint

    for folder, score, value in ((tmp_path, first, 1.0), (tmp_path / FINETUNE_DIR, second, 2.0)):
        folder.mkdir(exist_ok=True)
        write_checkpoint(folder / "best.safetensors", {"w": torch.full((2,), value)}, {}, {"MAP@R": score})
    stage1 = (tmp_path / "best.safetensors").read_bytes()
    assert promote_finetuned(tmp_path) is promoted
    assert ((tmp_path / "best.safetensors").read_bytes() == (tmp_path / FINETUNE_DIR / "best.safetensors").read_bytes()
            ) is promoted and (promoted or (tmp_path / "best.safetensors").read_bytes() == stage1)
