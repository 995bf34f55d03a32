"""benchmarks/retrieval_flowers.py refuses a config the trainer would refuse before its first row, not after the
rows before it ran."""
from __future__ import annotations

import pytest

from tests.apps.retrieval_files import write_class_folders
from tests.benchmarks.scripts import assert_one_line_error, run_script
from tests.benchmarks.test_retrieval_flowers import CLASSES, TINY


@pytest.mark.slow
@pytest.mark.parametrize("options, reason", [(["--minutes", -1], "minutes must be >= 0, got -1.0"),
                                             (["--minutes", 0.05, "--set", "lr=-1"], "lr must be >= 0, got -1.0"),
                                             (["--minutes", 0.05, "--set", "mode=nope"], "mode 'nope' is unknown")])
def test_config_the_trainer_refuses_is_refused_before_the_frozen_row(tmp_path, options, reason):
    data = write_class_folders(tmp_path / "flowers17", CLASSES, per_class=4,
                               splits={"train": CLASSES[:8], "test": CLASSES[8:]})
    out = tmp_path / "out.json"
    done = run_script("retrieval_flowers.py", "--data", data, *options, *TINY, "--methods",
                      "frozen,triplet_upper_bound", "--out", out)
    assert_one_line_error(done, reason)
    assert done.stdout == "" and not out.exists() and not (tmp_path / "out_runs").exists()
