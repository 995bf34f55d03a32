"""Running a benchmark script as its README command does (``python benchmarks/<script> ...``), and what its refusals
must look like."""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """``benchmarks/<name>`` imported as a module (put ``BENCHMARKS`` on ``sys.path`` first when it imports its
    siblings)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{Path(name).stem}", BENCHMARKS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, *args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python benchmarks/<name> *args`` on one thread (tests measure no speed)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """The script stopped with exit status 1 and a single line on stderr, naming ``fragments``; returns it."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{Path(done.args[1]).name}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


class _Parsed(Exception):
    """Raised in place of parsing the command line: carries the parser."""


def options_without_help(main: Callable[[], None]) -> list[str]:
    """The options of the parser ``main`` builds (up to its ``parse_args``, which is not run) that ``--help`` shows
    without a description."""
    def capture(parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Parsed(parser)

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = capture
    try:
        main()
    except _Parsed as parsed:
        parser = parsed.args[0]
    else:
        raise AssertionError("main() built no parser")
    finally:
        argparse.ArgumentParser.parse_args = original
    return [action.option_strings[-1] for action in parser._actions if action.option_strings and not action.help]
