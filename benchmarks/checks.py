"""The benchmarks' input checks and JSON writes: a data path that is missing or wrong, or an output path that cannot
be written, stops a benchmark with one line on stderr (``<script>: error: ...``, exit status 1) before its long run,
not with a traceback (or after it); the JSON is written atomically (a temporary file beside it, then renamed), so a
reader or a kill never sees half a file."""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, NoReturn, Optional, Sequence

import click

from apps.cli import error_message
from apps.options import name_list
from coseg.atomic import TEMPORARY_MARK, write_text_atomic
from coseg.data import printable

# What a data set, a splits file, a run folder or a config that cannot serve raises (LayoutError, ConfigError and
# the splits' errors are ValueErrors; unknown splits KeyErrors; unreadable files OSErrors).
EXPECTED = (ValueError, KeyError, OSError)


def fail(message: str) -> NoReturn:
    raise SystemExit(f"{Path(sys.argv[0]).name}: error: {message}")


@contextlib.contextmanager
def one_line(*errors: type[BaseException]) -> Iterator[None]:
    """Inside: the ``errors`` (default :data:`EXPECTED`) end the benchmark through :func:`fail`. Wrap only the
    checks of what the user gave, so a bug in the run itself still shows its traceback."""
    try:
        yield
    except (errors or EXPECTED) as e:
        fail(error_message(e))


def child_output(command: list[str], what: str) -> str:
    """The standard output of ``command``, a measurement run in a process of its own; when it fails, its standard
    error is passed on and the benchmark stops with one line naming ``what``."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
        fail(f"{what} failed with exit status {done.returncode}: its output is above")
    return done.stdout


def at_least_one(parser: argparse.ArgumentParser, *options: tuple[str, Sequence[int]]) -> None:
    """Stop with ``parser``'s usage error when a value of one of ``options`` (option, its values) is below 1."""
    for option, values in options:
        if min(values) < 1:
            parser.error(f"{option} must be >= 1, got {min(values)}")


def names_of(parser: argparse.ArgumentParser, option: str, value: Optional[str]) -> Optional[list[str]]:
    """``value`` of ``option`` read as the commands read a list of names (:func:`apps.options.name_list`: ``a,b`` or
    ``@FILE``), None when it was not given; ``parser``'s usage error when it names none (an unset shell variable) or
    its FILE cannot be read."""
    try:
        return name_list(None, None, value)
    except click.BadParameter as e:
        parser.error(f"{option}: {e.message}")


def model_side(parser: argparse.ArgumentParser, option: str, side: int) -> None:
    """Stop with ``parser``'s usage error when ``side`` (pixels, ``option``'s value) is not a multiple of 32, the
    output stride of the default model, which refuses other image sides."""
    if side % 32:
        parser.error(f"{option} must be a multiple of 32 (the model's output stride), got {side}")


def overrides(pairs: list[str], option: str = "--set") -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict (a later KEY wins); a ValueError naming the one without ``=`` or a key."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def check_writable(path: Path, option: str = "--out", folder: bool = False) -> None:
    """Fail now, not after the run, when ``path`` (a file; with ``folder``, a folder) cannot be written: its folder
    cannot be made or written into, or it is a folder where a file is wanted. Makes the folder, as the write
    would."""
    where = path if folder else path.parent
    existing = where
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not folder and path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a folder")
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{printable(existing)} is not a folder")
        where.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name[:80]}{TEMPORARY_MARK}", dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        fail(f"cannot write {option} {printable(path)} ({e.strerror or e})")


def strict(data: Any) -> Any:
    """``data`` with every NaN or infinite float as None: JSON has no such numbers (``jq`` refuses Python's ``NaN``)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict(v) for v in data]
    return data


def write_json(path: Path, data: Any, indent: int = 1) -> None:
    """``data`` as strict JSON in ``path`` (NaN and infinities as null), atomically."""
    try:
        write_text_atomic(path, json.dumps(strict(data), indent=indent, allow_nan=False) + "\n")
    except OSError as e:
        fail(f"cannot write {printable(path)} ({e.strerror or e})")
