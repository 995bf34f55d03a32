"""Audit of group_statistics_memory.py: when one of its two measurement processes fails, the other one is stopped
too (it ran on alone, for minutes and gigabytes at the README's size, after the benchmark had exited)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.benchmarks.scripts import BENCHMARKS, load_script


class FakeProcess:
    """The first started fails at once; the second would run on until killed."""

    started: list["FakeProcess"] = []

    def __init__(self, command, **kwargs):
        self.failing = not FakeProcess.started
        self.returncode = None
        self.killed = False
        FakeProcess.started.append(self)

    def communicate(self):
        self.returncode = 1 if self.failing else 0
        return "", None

    def poll(self):
        return self.returncode

    def kill(self):
        self.killed = True
        self.returncode = -9

    def wait(self):
        return self.returncode


def test_a_failing_measurement_stops_the_other_one(tmp_path, monkeypatch):
    FakeProcess.started = []
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the script imports its sibling checks.py
    monkeypatch.setattr(subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(sys, "argv", ["group_statistics_memory.py"])
    with pytest.raises(SystemExit) as stopped:
        load_script("group_statistics_memory.py").main(["--images", "2", "--size", "64", "--out",
                                                        str(tmp_path / "out.json")])
    assert "one pass: the measurement process failed (exit 1" in str(stopped.value.code)
    first, second = FakeProcess.started
    assert second.killed and not first.killed
    assert not (tmp_path / "out.json").exists()
