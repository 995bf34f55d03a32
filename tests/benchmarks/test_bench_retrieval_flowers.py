"""benchmarks/retrieval_flowers.py: the modes that train nothing (--loss-times, --export-speed) need no --minutes;
--loss-times' JSON holds the ratio to the upper bound its table prints; a malformed --set is named."""
from __future__ import annotations

import json

import pytest

from tests.apps.retrieval_files import write_class_folders
from tests.benchmarks.scripts import BENCHMARKS, load_script

CLASSES = [f"{i:02d}_flower" for i in range(10)]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings timing.py and checks.py
    return load_script("retrieval_flowers.py")


def test_loss_times_need_no_minutes_and_write_the_printed_ratio(bench, tmp_path, capsys):
    data = write_class_folders(tmp_path / "flowers", CLASSES, per_class=8,
                               splits={"train": CLASSES[:8], "test": CLASSES[8:]})
    out = tmp_path / "loss_times.json"
    bench.main(["--data", str(data), "--out", str(out), "--loss-times", "--set", "embedding_dim=16",
                "--methods", "triplet_batch_hard,triplet_upper_bound"])
    rows = json.loads(out.read_text())["rows"]
    assert rows["triplet_upper_bound"]["vs_upper_bound"] == 1.0
    table = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:3]}
    for name, row in rows.items():
        assert table[name] == [f"{row['loss_seconds_per_epoch']:.4f}", f"{row['vs_upper_bound']:.1f}"]


def test_training_rows_still_need_minutes(bench, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--data", str(tmp_path), "--out", str(tmp_path / "out.json")])
    assert stopped.value.code == 2 and "--minutes is required" in capsys.readouterr().err


def test_a_set_without_key_and_value_is_named(bench, tmp_path):
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--data", str(tmp_path), "--minutes", "1", "--out", str(tmp_path / "out.json"), "--set", "lr"])
    assert str(stopped.value.code).endswith("error: --set 'lr': expected KEY=VALUE")
