"""Audit of retrieval_flowers.py's options: what a measurement of its own would ignore is a usage error naming the
option (``--loss-times --export-speed M`` measured the export alone, ``--export-speed M --methods ... --set ...``
measured it with neither, ``--validation`` with either scored nothing on the validation classes); a method named
twice in --methods is trained once (it trained twice into the same folder); an empty name is shown as one."""
from __future__ import annotations

import json
import sys

import pytest

from tests.apps.retrieval_files import write_class_folders
from tests.benchmarks.scripts import BENCHMARKS, load_script
from tests.benchmarks.test_retrieval_flowers import CLASSES


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its siblings checks.py and timing.py
    monkeypatch.setattr(sys, "argv", ["retrieval_flowers.py"])  # the name the usage error starts with
    return load_script("retrieval_flowers.py")


@pytest.mark.parametrize("options, message", [
    (["--loss-times", "--export-speed", "m.safetensors"],
     "--loss-times cannot be used with --export-speed, which measures the export of its model file alone"),
    (["--export-speed", "m.safetensors", "--methods", "soft_triple", "--set", "batch_size=8"],
     "--methods, --set cannot be used with --export-speed, which measures the export of its model file alone"),
    (["--loss-times", "--validation"], "--validation cannot be used with --loss-times, which measures each "
                                       "method's loss alone"),
    (["--minutes", "1", "--methods", "frozen,,soft_triple"], "--methods: unknown method(s) ''; valid: frozen, "),
])
def test_an_option_the_measurement_would_ignore_is_a_usage_error(bench, tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--data", str(tmp_path / "flowers17"), *options, "--out", str(tmp_path / "out.json")])
    assert stopped.value.code == 2 and not (tmp_path / "out.json").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"retrieval_flowers.py: error: {message}")


def test_a_method_named_twice_is_measured_once(bench, tmp_path, monkeypatch, capsys):
    data = write_class_folders(tmp_path / "flowers17", CLASSES, per_class=2,
                               splits={"train": CLASSES[:8], "test": CLASSES[8:]})
    measured = []

    def frozen_row(cfg, data, device, validation):
        measured.append(cfg.output)
        return {"R@1": 50.0, "MAP@R": 40.0, "skipped": []}

    monkeypatch.setattr(bench, "frozen_row", frozen_row)
    out = tmp_path / "out.json"
    bench.main(["--data", str(data), "--minutes", "1", "--methods", "frozen,frozen", "--validation",
                "--out", str(out)])
    assert measured == [str(tmp_path / "out_runs" / "frozen")]
    assert list(json.loads(out.read_text())["rows"]) == ["frozen"]
