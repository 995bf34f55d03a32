"""One training per run folder: the trainer holds an OS advisory lock on ``<run folder>/.training.lock`` while it
trains, so that a second training into the folder (``--resume``, ``--overwrite`` or a new run) is refused instead of
mixing its files with the first's. The system releases the lock when the process ends, however it ends: a killed
run blocks no later ``--resume``. Readers of a run folder (evaluate, predict, report) take no lock."""
from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from pathlib import Path
from typing import Iterator, Optional

from coseg.atomic import PathLike
from coseg.data.io import printable
from coseg.engine.distributed import DistInfo, launched_rank

LOCK_FILE = ".training.lock"
"""The lock file in a run folder; it holds the training's pid and host, and is removed when the training ends."""

_WINDOWS_BYTE = 1 << 20
"""Where ``msvcrt.locking`` locks its byte: past the holder's line, which the refused process reads."""

_HELD: set[int] = set()
"""The descriptors of the locks this process holds. A process forked from it (a DataLoader worker) closes its copies
(:func:`_close_inherited`): else the lock would outlive a killed training as long as its workers."""


def _close_inherited() -> None:
    """In a forked child: close the descriptors of the parent's locks; the parent holds them on."""
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_close_inherited)


def _try_lock(fd: int) -> bool:
    """Take the OS's advisory lock on ``fd``'s file without waiting; False while another process holds it."""
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, _WINDOWS_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in _NO_LOCKS:
            raise LocksUnsupported(e.strerror or str(e)) from None
        raise
    return True


class LocksUnsupported(OSError):
    """The file system refuses advisory locks (NFS without its lock service, some FUSE mounts)."""


_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})
_UNLOCKED: set[Path] = set()
"""The folders this process was warned of as taking no lock (:func:`folder_lock`)."""


def _release(fd: int, path: Path) -> None:
    """Unlock and remove the lock file; on Windows a file another process has open stays (it is not locked)."""
    _HELD.discard(fd)
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, _WINDOWS_BYTE, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
    else:  # removed while locked: a process waiting on this file finds it gone and locks the new one
        path.unlink(missing_ok=True)
        os.close(fd)


def _acquire(path: Path) -> Optional[int]:
    """A descriptor of ``path`` locked by this process, or None while another process holds the lock;
    ``LocksUnsupported`` where the file system takes no lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            locked = _try_lock(fd)
        except OSError:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            return None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                _HELD.add(fd)
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed it on ending after this process opened it: lock the file there now


def _holder(path: Path) -> str:
    """The holder's line of the lock file at ``path`` (pid and host)."""
    try:
        line = path.read_text(encoding="utf-8", errors="replace").strip()[:200]
    except OSError:
        line = ""
    return printable(line) if line else "its pid not written yet"


@contextlib.contextmanager
def folder_lock(folder: PathLike, lock_file: str, busy: str, option: str = "--output") -> Iterator[None]:
    """Hold the lock ``folder/lock_file`` for the block, creating the folder (``FileExistsError`` naming a file or a
    link to a missing folder in its way); while another process holds it, raise ``ValueError`` naming the folder,
    ``busy`` (what is running there), that process and the ``option`` that chose the folder, having written nothing.
    On a file system that takes no lock, the block runs unlocked after a warning (once a folder in a process). The
    lock file holds this process's pid and host and is removed on leaving; a folder this creates is removed again
    when the block fails leaving it empty."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:  # "File exists" alone, for a link to a folder that is not there
        raise FileExistsError(e.errno, "a file or a link to a missing folder is where a folder goes", e.filename
                              ) from None
    path = folder / lock_file
    unsupported: Optional[LocksUnsupported] = None
    try:
        fd = _acquire(path)
    except LocksUnsupported as e:
        fd, unsupported = None, e
        path.unlink(missing_ok=True)
        if folder.resolve() not in _UNLOCKED:  # once: a run takes several locks there (evaluate, report)
            _UNLOCKED.add(folder.resolve())
            print(f"warning: {printable(folder)} is on a file system that takes no lock ({e}): going on unlocked, so "
                  "a second run into it would not be refused; see that none starts", file=sys.stderr)
    if fd is None and unsupported is None:
        raise ValueError(f"{printable(folder)}: {busy} ({_holder(path)}); wait until it ends, or choose another "
                         f"{option}")
    try:
        if fd is not None:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode())
        yield
    except BaseException:
        if fd is not None:
            _release(fd, path)
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise
    if fd is not None:
        _release(fd, path)


@contextlib.contextmanager
def training_lock(folder: PathLike, dist: Optional[DistInfo] = None) -> Iterator[None]:
    """Hold ``folder``'s training lock (:data:`LOCK_FILE`, :func:`folder_lock`) for the block. Only the main process
    takes it (``dist``'s rank 0, else torchrun's ``RANK`` 0 or a single process, whatever a ``RANK`` left in its
    environment says); the other ranks go on at once."""
    rank = dist.rank if dist is not None else launched_rank()
    if rank != 0:
        yield
        return
    with folder_lock(folder, LOCK_FILE, "another training is running into this folder"):
        yield
