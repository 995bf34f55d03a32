"""Audit of the benchmarks' --help: each prints its whole module docstring (what it measures, what its JSON holds,
the command to run) and describes every option; group_statistics_memory.py and large_group.py refuse an image side
the model cannot take before they start their measurement processes."""
from __future__ import annotations

import ast
import sys

import pytest

from tests.benchmarks.scripts import BENCHMARKS, load_script, options_without_help
from tests.benchmarks.test_audit_s9_refusals import no_children  # noqa: F401 - a fixture

SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if "def main(" in p.read_text(encoding="utf-8"))


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_the_whole_docstring(monkeypatch, capsys, script):
    """colour_cut_memory.py, group_statistics_chunks.py and metric_vs_pml.py printed their first paragraph or line
    only (no command, nothing of the JSON); group_statistics_memory.py stopped mid-sentence, at its first line."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    docstring = ast.get_docstring(ast.parse((BENCHMARKS / script).read_text(encoding="utf-8")), clean=False)
    with pytest.raises(SystemExit) as stopped:
        load_script(script).main()
    assert stopped.value.code == 0
    assert words(docstring) in words(capsys.readouterr().out)


@pytest.mark.parametrize("script", ["colour_cut_memory.py", "group_statistics_memory.py"])
def test_every_option_is_described(monkeypatch, script):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    assert options_without_help(load_script(script).main) == []


@pytest.mark.parametrize("script, argv, message", [
    ("group_statistics_memory.py", ["--images", "2", "--size", "100"], "--size must be a multiple of 32"),
    ("large_group.py", ["--images", "2", "--image-size", "50"], "--image-size must be a multiple of 32"),
])
def test_a_side_the_model_cannot_take_is_a_usage_error(no_children, monkeypatch, capsys,  # noqa: F811
                                                       script, argv, message):
    """It started the measurement processes, which each stopped with the model's traceback."""
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as stopped:
        load_script(script).main()
    assert stopped.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"{script}: error: {message} (the model's output stride), got {argv[-1]}"
