"""coseg.atomic: a finished write replaces the target whole and leaves the mode a plain write would give."""
from __future__ import annotations

import os
import stat

import pytest

from coseg.atomic import atomic_path, write_text_atomic


def test_written_file_has_the_mode_of_a_plain_write(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    write_text_atomic(tmp_path / "atomic.txt", "x")
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    assert mode(tmp_path / "atomic.txt") == mode(plain)


def test_a_failed_write_leaves_the_target_and_no_temporary(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_a_full_disk_is_named_with_the_target(tmp_path):
    """A write that fails with an OSError naming no file (ENOSPC from a file object's write) names the target, so a
    run's one-line error says which file could not be written."""
    import errno

    target = tmp_path / "config.yaml"
    with pytest.raises(OSError) as caught:
        with atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(target))
    with pytest.raises(FileNotFoundError) as named:  # an error that names its own file is left as it is
        with atomic_path(target):
            open(tmp_path / "missing" / "x", "rb")
    assert named.value.filename == str(tmp_path / "missing" / "x")
    assert not target.exists() and [p.name for p in tmp_path.iterdir()] == []
