"""benchmarks/retrieval_flowers.py: the modes that train nothing (--loss-times, --export-speed) need no --minutes;
--loss-times' JSON holds the ratio to the upper bound its table prints; a malformed --set is named; images that
cannot be read, at start-up or once decoded, are skipped, counted in the table and listed in the JSON."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import apps.retrieval.train
import coseg.data.cache
from tests.apps.retrieval_files import write_class_folders
from tests.apps.test_retrieval_unreadable_during_training import remove_cache_and
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


TINY = [f"--set={kv}" for kv in ("backbone=test_efficientnet", "weights=none", "image_size=32", "epochs=1",
                                  "head_passes=1", "classes_per_batch=2", "samples_per_class=4", "batch_size=16",
                                  "device=cpu")]


@pytest.fixture
def flowers(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(data set with one test image that cannot be decoded, its test image to lose once decoded), read from the
    disk cache on each use (so that removing an image's cache file and source makes it unreadable)."""
    monkeypatch.setattr(coseg.data.cache, "MEMORY_SHARE", 0.0)
    data = write_class_folders(tmp_path / "flowers", CLASSES, per_class=8,
                               splits={"train": CLASSES[:8], "test": CLASSES[8:]})
    (data / CLASSES[8] / "img000.jpg").write_bytes(b"not an image")
    return data, data / CLASSES[9] / "img003.jpg"


def run_rows(bench, data: Path, tmp_path: Path, methods: str) -> dict:
    out = tmp_path / "out.json"
    bench.main(["--data", str(data), "--minutes", "0.05", *TINY, "--methods", methods, "--work", str(tmp_path / "work"),
                "--out", str(out)])
    return json.loads(out.read_text())["rows"]


def test_the_frozen_row_skips_counts_and_reports_unreadable_images(bench, flowers, tmp_path, monkeypatch, capsys):
    data, victim = flowers

    class LosingOne(bench.RetrievalImageDataset):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            remove_cache_and(tmp_path / "work" / "cache", victim)

    monkeypatch.setattr(bench, "RetrievalImageDataset", LosingOne)
    row = run_rows(bench, data, tmp_path, "frozen")["frozen"]
    assert [entry.split(": ")[0] for entry in row["skipped"]] == [str(data / CLASSES[8] / "img000.jpg"), str(victim)]
    out = capsys.readouterr().out
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    assert table["method"][6] == "skipped" and table["frozen"][6] == "2"  # after R@1 .. NMI
    assert "skipped 2 unreadable file(s):" in out and f"  {victim}: " in out


def test_a_method_row_reports_the_images_its_training_and_scoring_could_not_read(bench, flowers, tmp_path,
                                                                                 monkeypatch, capsys):
    data, _ = flowers
    lost: list[Path] = []
    load_training_data = apps.retrieval.train.load_training_data

    def then_lost(*args, **kwargs):
        loaded = load_training_data(*args, **kwargs)
        lost.append(loaded.train.records[1].path)
        remove_cache_and(tmp_path / "work" / "cache", *lost)
        return loaded

    monkeypatch.setattr(apps.retrieval.train, "load_training_data", then_lost)
    row = run_rows(bench, data, tmp_path, "triplet_upper_bound")["triplet_upper_bound"]
    assert [entry.split(": ")[0] for entry in row["skipped"]] == [str(lost[0]), str(data / CLASSES[8] / "img000.jpg")]
    out = capsys.readouterr().out
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    assert table["triplet_upper_bound"][6] == "2"
    assert "skipped 2 unreadable file(s):" in out and f"  {lost[0]}: " in out
