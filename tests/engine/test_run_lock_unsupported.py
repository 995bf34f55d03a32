"""A file system that takes no advisory lock (NFS without its lock service: ENOLCK; some FUSE mounts: EOPNOTSUPP)
stopped every training, export and predict with a raw OSError; they now go on unlocked after a warning. Other
errors of the lock call still stop them."""
from __future__ import annotations

import errno
import fcntl
import os

import pytest

from coseg.engine.run_lock import LOCK_FILE, folder_lock, training_lock


def refusing(code: int):
    def flock(fd, operation):
        raise OSError(code, os.strerror(code))
    return flock


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS])
def test_a_file_system_without_locks_runs_unlocked_after_a_warning(tmp_path, monkeypatch, capsys, code):
    monkeypatch.setattr(fcntl, "flock", refusing(code))
    run = tmp_path / "run"
    with training_lock(run):
        (run / "log.csv").write_text("epoch\n")
        assert not (run / LOCK_FILE).exists()
    warning = capsys.readouterr().err
    assert warning.startswith(f"warning: {run} is on a file system that takes no lock ({os.strerror(code)}): going "
                              "on unlocked, so a second run into it would not be refused")
    assert sorted(p.name for p in run.iterdir()) == ["log.csv"]


def test_a_failed_block_without_locks_removes_the_folder_it_created(tmp_path, monkeypatch):
    monkeypatch.setattr(fcntl, "flock", refusing(errno.ENOLCK))
    with pytest.raises(RuntimeError, match="stopped"):
        with folder_lock(tmp_path / "out", ".x.lock", "busy"):
            raise RuntimeError("stopped")
    assert not (tmp_path / "out").exists()


def test_another_error_of_the_lock_call_still_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(fcntl, "flock", refusing(errno.EIO))
    with pytest.raises(OSError, match=os.strerror(errno.EIO)):
        with training_lock(tmp_path / "run"):
            pass
