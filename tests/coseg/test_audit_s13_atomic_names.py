"""Atomic writes of names the file system takes but whose temporary name was too long (multi-byte characters,
a long "suffix"), and writes without fsync (report thumbnails)."""
from __future__ import annotations

import os

import pytest

from coseg.atomic import NAME_BYTES, TEMPORARY_MARK, atomic_path, write_bytes_atomic


@pytest.mark.parametrize("name", ["中" * 80 + ".png", "😀" * 61 + ".png", "a." + "b" * 250, "é" * 125 + ".png"])
def test_any_name_the_file_system_takes_is_written_atomically(tmp_path, name):
    assert len(os.fsencode(name)) <= NAME_BYTES
    write_bytes_atomic(tmp_path / name, b"x")
    assert (tmp_path / name).read_bytes() == b"x"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_the_temporary_keeps_a_format_suffix(tmp_path):
    with atomic_path(tmp_path / "a.png") as tmp:
        assert tmp.suffix == ".png" and tmp.name.startswith(f".a.png{TEMPORARY_MARK}")
        tmp.write_bytes(b"x")


@pytest.mark.parametrize("fsync, calls", [(True, 1), (False, 0)])
def test_fsync_can_be_left_out(tmp_path, monkeypatch, fsync, calls):
    seen = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (seen.append(fd), real(fd)))
    write_bytes_atomic(tmp_path / "a.bin", b"data", fsync=fsync)
    assert len(seen) == calls and (tmp_path / "a.bin").read_bytes() == b"data"
