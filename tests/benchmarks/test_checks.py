"""benchmarks/checks.py: a path that cannot serve ends a benchmark with one line, and its JSON is written atomically."""
from __future__ import annotations

import json
import os

import pytest

from tests.benchmarks.scripts import load_script


@pytest.fixture(scope="module")
def checks():
    return load_script("checks.py")


@pytest.mark.parametrize("where", ["under_a_file", "a_folder"])
def test_an_output_that_cannot_be_written_is_one_line(checks, tmp_path, where):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    out = tmp_path / "file" / "out.json" if where == "under_a_file" else tmp_path / "folder"
    with pytest.raises(SystemExit) as stopped:
        checks.check_writable(out)
    message = str(stopped.value.code)
    assert "\n" not in message and "error: cannot write --out" in message and str(out) in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"] and not any((tmp_path / "folder").iterdir())


def test_a_writable_output_leaves_no_file_behind(checks, tmp_path):
    checks.check_writable(tmp_path / "new" / "out.json")
    assert (tmp_path / "new").is_dir() and not any((tmp_path / "new").iterdir())


def test_json_replaces_the_file_by_a_rename(checks, tmp_path):
    out = tmp_path / "out.json"
    out.write_text("old")
    os.link(out, tmp_path / "old.json")  # another name of the old file: rewritten in place, it would change too
    checks.write_json(out, {"a": 1})
    assert json.loads(out.read_text()) == {"a": 1} and (tmp_path / "old.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json", "out.json"]  # no temporary file left


def test_json_is_strict_json(checks, tmp_path):
    """A NaN score (e.g. J of a group whose masks are all empty) is written as null: Python wrote NaN, which strict
    readers (jq, JavaScript's JSON.parse) refuse."""
    out = tmp_path / "out.json"
    checks.write_json(out, {"J": float("nan"), "rows": [(1.5, float("inf")), {"P": -float("inf")}], "n": 2})
    assert json.loads(out.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in {out}")) == {
        "J": None, "rows": [[1.5, None], {"P": None}], "n": 2}


@pytest.mark.parametrize("error, shown", [
    (KeyError("split 'train' not in x/splits.json"), "split 'train' not in x/splits.json"),
    (FileNotFoundError(2, "No such file or directory", "/no/such"), "No such file or directory: /no/such"),
    (ValueError("data folder not found: /no/such"), "data folder not found: /no/such"),
])
def test_expected_errors_become_one_line(checks, error, shown):
    with pytest.raises(SystemExit) as stopped, checks.one_line():
        raise error
    assert str(stopped.value.code).endswith(f": error: {shown}")


def test_other_errors_keep_their_traceback(checks):
    with pytest.raises(RuntimeError), checks.one_line():
        raise RuntimeError("a bug")
