"""A validation share set beside named validation classes (groups) was ignored without a word, even --val-fraction 0,
"no validation" (audit s17): it is now a usage error naming both, before any image is read. A share equal to the
default is taken as not given (a run's config.yaml holds every option); given on the command line, either option
replaces the --config file's other one; a run of an earlier version that saved both resumes."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.train import check_config as check_retrieval_config, train as train_retrieval
from coseg.config import CosegTrainConfig
from coseg.engine import ConfigError, load_config
from coseg.train import check_config as check_coseg_config, member_configs
from tests.apps.retrieval_runs import BACKBONE, tiny_config, tiny_set
from tests.apps.test_audit_s12_cli_config import coseg
from tests.coseg.pipeline_fixtures import synthetic_set


def no_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make reading the data set (either trainer's) fail the test."""
    import apps.retrieval.train as retrieval_train
    import coseg.train as coseg_train

    def read(*args, **kwargs):
        raise AssertionError("the data set was read")

    monkeypatch.setattr(retrieval_train, "load_retrieval_split", read)
    monkeypatch.setattr(retrieval_train, "ImageCache", read)
    monkeypatch.setattr(coseg_train, "find_samples", read)


@pytest.mark.parametrize("fraction, told", [("0.3", "--val-fraction 0.3 and"),
                                            ("0", "--val-fraction 0.0 (no validation) and")])
def test_retrieval_train_refuses_a_share_beside_the_validation_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       fraction: str, told: str) -> None:
    no_reading(monkeypatch)
    data = tiny_set(tmp_path / "data")
    code, output = coseg("retrieval", "train", "--data", data, "--output", tmp_path / "run", "--backbone", BACKBONE,
                         "--weights", "none", "--val-classes", "class0,class1", "--val-fraction", fraction,
                         "--device", "cpu", "--quiet")
    assert code == 2 and f"Error: {told} --val-classes class0, class1 both choose the validation classes: give one " \
                          "of them" in output, output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("fraction, told", [("0.3", "--val-fraction 0.3 and"),
                                            ("0", "--val-fraction 0.0 (no validation) and")])
def test_coseg_train_refuses_a_share_beside_the_validation_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  fraction: str, told: str) -> None:
    no_reading(monkeypatch)
    (tmp_path / "data").mkdir()
    code, output = coseg("train", "--data", tmp_path / "data", "--output", tmp_path / "run", "--weights", "none",
                         "--val-groups", "g0", "--val-fraction", fraction, "--device", "cpu", "--quiet")
    assert code == 2 and f"Error: {told} --val-groups g0 both choose the validation groups: give one of them" in output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("cls, named, check", [(RetrievalTrainConfig, "val_classes", check_retrieval_config),
                                               (CosegTrainConfig, "val_groups", check_coseg_config)])
def test_either_option_on_the_command_line_replaces_the_config_files_other(tmp_path: Path, cls: type, named: str,
                                                                          check) -> None:
    default = cls.val_fraction
    share = tmp_path / "share.yaml"
    share.write_text("data: d\nweights: none\nval_fraction: 0.3\n")
    cfg = load_config(cls, share, {named: ["a", "b"]})
    assert (getattr(cfg, named), cfg.val_fraction) == (["a", "b"], default)
    check(cfg)
    names = tmp_path / "names.yaml"
    names.write_text(f"data: d\nweights: none\n{named}: [a, b]\n")
    cfg = load_config(cls, names, {"val_fraction": 0.3})
    assert (getattr(cfg, named), cfg.val_fraction) == ([], 0.3)
    check(cfg)
    copied = tmp_path / "copied.yaml"  # a run's config.yaml holds every option: the default share beside the names
    copied.write_text(f"data: d\nweights: none\n{named}: [a, b]\nval_fraction: {default}\n")
    check(load_config(cls, copied))
    both = tmp_path / "both.yaml"
    both.write_text(f"data: d\nweights: none\n{named}: [a, b]\nval_fraction: 0.3\n")
    with pytest.raises(ConfigError, match="--val-fraction 0.3 and --val-.* a, b both choose the validation"):
        check(load_config(cls, both))
    check(load_config(cls, both), resume=True)  # the run's own options: an earlier version saved both


def test_a_retrieval_run_of_an_earlier_version_that_saved_both_resumes(tmp_path: Path) -> None:
    data = tiny_set(tmp_path / "data")
    run = tmp_path / "run"
    train_retrieval(tiny_config(data, run, val_classes=["class0", "class1"], val_fraction=0.2, epochs=1))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**saved, "val_fraction": 0.34}, sort_keys=False))
    result = train_retrieval(load_config(RetrievalTrainConfig, run / "config.yaml", {"epochs": 2}), resume=True)
    assert result.val_classes == ["class0", "class1"] and result.stages["head"].epochs_run == 2


def test_ensemble_members_record_their_groups_with_the_default_share(tmp_path: Path) -> None:
    data = synthetic_set(tmp_path / "data", groups=3, images=2)
    from coseg.data import find_samples

    cfg = CosegTrainConfig(data=str(data), weights="none", members=2, epochs=2, val_fraction=0.34)
    members = member_configs(cfg, find_samples(str(data), "auto"))
    assert all(m.val_groups and m.val_fraction == CosegTrainConfig.val_fraction for m in members)
    for member in members:  # a member's config.yaml reused as a --config file is taken
        check_coseg_config(member)
