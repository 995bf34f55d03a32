"""Audit of colour_cut_memory.py: a measurement process that fails stops the benchmark with one line, its error
passed on (it stopped with a CalledProcessError traceback, the child's own error captured and lost)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.benchmarks.scripts import BENCHMARKS, load_script


def test_a_failing_measurement_process_shows_its_error_and_stops_with_one_line(tmp_path, monkeypatch, capsys):
    def failing(command, **kwargs):
        done = subprocess.CompletedProcess(command, 1, "", "MemoryError: the cut of 1024 px\n")
        if kwargs.get("check"):
            done.check_returncode()
        return done

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(subprocess, "run", failing)
    monkeypatch.setattr(sys, "argv", ["colour_cut_memory.py"])
    out = tmp_path / "out.json"
    with pytest.raises(SystemExit) as stopped:
        load_script("colour_cut_memory.py").main(["--sizes", "1024", "--images", "1", "--out", str(out)])
    assert stopped.value.code == ("colour_cut_memory.py: error: the measurement's process (size 1024) failed with "
                                  "exit status 1: its output is above")
    assert "MemoryError: the cut of 1024 px" in capsys.readouterr().err
    assert not out.exists()
