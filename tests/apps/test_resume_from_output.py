"""`coseg train --resume --output RUN` and `coseg retrieval train --resume --output RUN` without --config: the run's
own config.yaml gives the options (was: "--data is required"); flags still override it as on any resume."""
from __future__ import annotations

import csv

import yaml
from click.testing import CliRunner

from apps.cli import main
from tests.apps.retrieval_runs import tiny_set
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.reliability.test_bad_inputs import TINY_RETRIEVAL


def invoke(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def epochs(log) -> list[str]:
    return [row["epoch"] for row in csv.DictReader(open(log))]


def test_retrieval_resume_reads_the_runs_own_config(tmp_path):
    run = tmp_path / "run"
    invoke("retrieval", "train", "--data", tiny_set(tmp_path / "data"), "--output", run, "--epochs", 1,
           *TINY_RETRIEVAL)
    invoke("retrieval", "train", "--resume", "--output", run, "--epochs", 2)
    assert epochs(run / "log.csv") == ["1", "2"]
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 2


def test_coseg_resume_reads_the_runs_own_config(tmp_path):
    run = tmp_path / "run"
    invoke("train", "--data", synthetic_set(tmp_path / "data", groups=3, images=4), "--output", run, "--epochs", 1,
           "--members", 1, "--weights", "none", "--image-size", 32, "--groups-per-batch", 2, "--images-per-group", 2,
           "--val-fraction", 0.34, "--triplet-pixels", 8, "--quiet")
    output = invoke("train", "--resume", "--output", run, "--quiet")
    assert "nothing left to train: the run had reached epoch 1" in output
    invoke("train", "--resume", "--output", run, "--epochs", 2, "--quiet")
    assert epochs(run / "log.csv") == ["1", "2"]
