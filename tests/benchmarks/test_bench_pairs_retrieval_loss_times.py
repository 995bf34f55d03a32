"""benchmarks/retrieval_flowers.py --loss-times times the methods' losses side by side: rounds in alternating order,
each method's ratio to the upper bound the median of each round's ratio (with its 95 % interval and every round's),
as printed and as written."""
from __future__ import annotations

import json
import statistics

import pytest

from tests.apps.retrieval_files import write_class_folders
from tests.benchmarks.scripts import BENCHMARKS, load_script

CLASSES = [f"{i:02d}_flower" for i in range(10)]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings timing.py and checks.py
    return load_script("retrieval_flowers.py")


@pytest.fixture
def data(tmp_path):
    return write_class_folders(tmp_path / "flowers", CLASSES, per_class=8,
                               splits={"train": CLASSES[:8], "test": CLASSES[8:]})


def loss_times(bench, data, out, *more: str) -> None:
    bench.main(["--data", str(data), "--out", str(out), "--loss-times", "--set", "embedding_dim=16",
                "--methods", "triplet_batch_hard,triplet_upper_bound", *more])


def test_the_ratio_to_the_upper_bound_is_the_median_of_paired_rounds(bench, data, tmp_path, monkeypatch, capsys):
    """Stand-in timings whose separate medians' ratio (3 / 2) differs from the median of the rounds' ratios (2)."""
    per_round = {"triplet_batch_hard": [3.0, 2.0, 8.0], "triplet_upper_bound": [1.0, 2.0, 4.0]}
    calls = []

    def fake_pass(cfg, labels, num_classes, dim):
        name = next(n for n in per_round if cfg.output.endswith(n))
        values = iter(per_round[name])
        return lambda: calls.append(name) or next(values)

    monkeypatch.setattr(bench, "loss_pass", fake_pass)
    out = tmp_path / "loss_times.json"
    loss_times(bench, data, out, "--rounds", "3")
    assert calls == ["triplet_batch_hard", "triplet_upper_bound", "triplet_upper_bound", "triplet_batch_hard",
                     "triplet_batch_hard", "triplet_upper_bound"]
    result = json.loads(out.read_text())
    row = result["rows"]["triplet_batch_hard"]
    assert result["rounds"] == 3 and row["loss_seconds_per_epoch"] == 3.0
    assert (row["vs_upper_bound"], row["vs_upper_bound_pairs"], row["vs_upper_bound_ci95"]) == (2.0, [3.0, 1.0, 2.0],
                                                                                                None)
    assert capsys.readouterr().out.splitlines()[1].split() == ["triplet_batch_hard", "3.0000", "2.0"]


def test_the_table_prints_what_the_json_holds(bench, data, tmp_path, capsys):
    out = tmp_path / "loss_times.json"
    loss_times(bench, data, out, "--rounds", "6")
    rows = json.loads(out.read_text())["rows"]
    lines = capsys.readouterr().out.splitlines()
    for name, row in rows.items():
        assert len(row["vs_upper_bound_pairs"]) == 6 and len(row["vs_upper_bound_ci95"]) == 2
        assert row["vs_upper_bound"] == pytest.approx(statistics.median(row["vs_upper_bound_pairs"]), abs=1e-4)
        assert [f"{row['loss_seconds_per_epoch']:.4f}", f"{row['vs_upper_bound']:.1f}"] in (
            line.split()[1:] for line in lines if line.startswith(name))
        assert f"{name:<26}95% CI {row['vs_upper_bound_ci95']}  rounds {row['vs_upper_bound_pairs']}" in lines


def test_rounds_below_one_are_refused(bench, data, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        loss_times(bench, data, tmp_path / "out.json", "--rounds", "0")
    assert stopped.value.code == 2 and "--rounds must be >= 1, got 0" in capsys.readouterr().err
