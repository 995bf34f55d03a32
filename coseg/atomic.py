"""Atomic file writes: write to a temporary file in the target folder, then rename over the target.

A reader (or a run killed with -9) never sees a half-written file: either the old file or the new one."""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import re
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Iterator, Union

PathLike = Union[str, os.PathLike]
TEMPORARY_MARK = ".tmp-"  # temporary files are named ``.<target name>.tmp-<random><suffix>``
_UMASK = os.umask(0)
os.umask(_UMASK)  # read it back: the process's umask, for the mode a plain write would give
NAME_BYTES = 255
"""The longest file name the usual file systems take (ext4, XFS, Btrfs, APFS), in bytes: UTF-8 ``é`` takes 2."""
_TEMPORARY_PREFIX_BYTES = 80  # of the target's name, in a temporary file's name
_TEMPORARY_SUFFIX_BYTES = 16  # a longer "suffix" (``a.<200 characters>``) names no format


def fitted_name(name: str, suffix: str = "", limit: int = NAME_BYTES) -> str:
    """``name + suffix``, or when that is longer than ``limit`` bytes, as many whole characters of the start of
    ``name`` as fit with ``~``, 8 hex digits of ``name``'s SHA-256 and ``suffix``: the same on every run, and long
    names that share their start stay apart."""
    if len(os.fsencode(name + suffix)) <= limit:
        return name + suffix
    tail = f"~{hashlib.sha256(os.fsencode(name)).hexdigest()[:8]}{suffix}"
    return _start_in_bytes(name, limit - len(os.fsencode(tail))) + tail


def _start_in_bytes(name: str, limit: int) -> str:
    """The longest start of ``name`` (whole characters) of at most ``limit`` bytes."""
    while len(os.fsencode(name)) > limit:
        name = name[:-1]
    return name


def _temporary_prefix(path: Path) -> str:
    """The start of the names of ``path``'s temporary files and staging folders."""
    return f".{_start_in_bytes(path.name, _TEMPORARY_PREFIX_BYTES)}{TEMPORARY_MARK}"


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """Raise an ``OSError`` of the block (making a temporary file in a read-only folder) again naming ``path``, the
    file meant, not the random temporary name."""
    try:
        yield
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from e


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str | None = None, fsync: bool = True, replace: bool = True
                ) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced (unless ``fsync`` is False: a file the next
    run makes again, whose loss in a power cut costs nothing) and renamed to ``path``. With ``replace`` False a file
    at ``path`` by then (made by another process meanwhile) is never replaced: ``FileExistsError`` naming ``path``.

    ``suffix`` defaults to ``path``'s own suffix (some writers choose the format from it; one of more than 16
    bytes names no format and is left out). The temporary name holds at most 80 bytes of ``path``'s name, so any
    name the file system takes can be written atomically. The file gets the mode
    a plain write would (0666 less the umask; the temporary file is private while it is written).
    On error the temporary file is removed and ``path`` is left as it was; an ``OSError`` that names no file (a
    full disk while writing), and one making the temporary file (a read-only folder), are raised again naming
    ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = path.suffix if len(os.fsencode(path.suffix)) <= _TEMPORARY_SUFFIX_BYTES else ""
    with _named(path):
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if fsync:
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        if replace:
            os.replace(tmp_path, path)
        else:
            _place_new(tmp_path, path)
    except BaseException as e:
        tmp_path.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


@contextlib.contextmanager
def staging_folder(path: PathLike) -> Iterator[Path]:
    """Yield a new empty folder beside ``path`` (named as :func:`atomic_path` names its temporary files) for files to
    be moved into ``path`` once all are written; it goes, with whatever it still holds, when the block ends. Those
    that processes killed in such a block left are removed first (:func:`remove_staging_folders`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_staging_folders(path)
    with _named(path):
        folder = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), dir=path.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_staging_folders(path: PathLike) -> int:
    """Delete the folders :func:`staging_folder` made beside ``path`` and left when their process was killed, with
    what they hold; returns how many. Not while another process writes into ``path``."""
    path = Path(path)
    found = path.parent.glob(glob.escape(_temporary_prefix(path)) + "*")
    stale = [p for p in found if p.is_dir() and not p.is_symlink()]
    for folder in stale:
        shutil.rmtree(folder)
    return len(stale)


_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS})  # FAT, some FUSE and NAS


def _place_new(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path`` unless something is at ``path`` (a dangling link too): ``FileExistsError`` naming
    ``path``. A hard link, which never replaces; where the file system makes none, ``path`` is first created empty
    and exclusively, then replaced (a kill in between leaves it empty)."""
    try:
        try:
            os.link(tmp, path)
        except OSError as e:
            if e.errno not in _NO_HARD_LINKS:
                raise
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            os.replace(tmp, path)
        else:
            tmp.unlink()
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None


def write_bytes_atomic(path: PathLike, data: bytes, fsync: bool = True, replace: bool = True) -> None:
    """Write ``data`` to ``path`` (:func:`atomic_path`; ``replace`` False: never over an existing file)."""
    with atomic_path(path, fsync=fsync, replace=replace) as tmp:
        tmp.write_bytes(data)


def write_bytes_if_changed(path: PathLike, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless ``path`` holds these bytes already (then it is left as it is,
    its time included); returns whether it was written."""
    try:
        if os.path.getsize(path) == len(data) and Path(path).read_bytes() == data:
            return False
    except OSError:
        pass  # no such file, or an unreadable one: write it
    write_bytes_atomic(path, data)
    return True


def move_atomic(source: PathLike, path: PathLike) -> None:
    """Rename ``source`` to ``path`` (replacing a file there); where ``path`` is on another file system (its folder a
    link to another disk), copy it there atomically (:func:`write_bytes_atomic`) and remove ``source``."""
    try:
        os.replace(source, path)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        write_bytes_atomic(path, Path(source).read_bytes())
        os.unlink(source)


def write_text_atomic(path: PathLike, text: str, replace: bool = True) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), replace=replace)


def _temporary_files(folder: Path) -> list[Path]:
    """The temporary files of atomic writes in ``folder`` (not in its sub-folders); none when it is no folder."""
    return [p for p in folder.glob(f".*{TEMPORARY_MARK}*") if p.is_file()] if folder.is_dir() else []


def _remove(files: list[Path]) -> int:
    for p in files:
        p.unlink(missing_ok=True)
    return len(files)


_RANDOM = "[a-z0-9_]{8}"  # what tempfile.mkstemp puts in a temporary name


def is_temporary(name: str, suffix: str) -> bool:
    """Whether ``name`` is that of a temporary file :func:`atomic_path` makes for a file whose name ends in
    ``suffix`` (``.png``): ``.<its name>.tmp-<8 random characters><suffix>``, its name cut when longer than 80
    bytes."""
    found = re.fullmatch(rf"\.(.+){re.escape(TEMPORARY_MARK)}{_RANDOM}{re.escape(suffix)}", name, re.DOTALL)
    # a cut name ends anywhere: its last character takes up to 4 bytes
    return found is not None and (found[1].endswith(suffix)
                                  or len(os.fsencode(found[1])) > _TEMPORARY_PREFIX_BYTES - 4)


def remove_temporaries(folder: PathLike) -> int:
    """Delete the temporary files that atomic writes left in ``folder`` (not in its sub-folders) when their process
    was killed (kill -9 runs no clean-up); returns how many. Call it when a run starts on its own output folder, not
    while another process writes there."""
    return _remove(_temporary_files(Path(folder)))


def remove_temporaries_of(paths: Iterable[PathLike]) -> int:
    """Delete the temporary files that atomic writes of ``paths`` left when their process was killed; returns how
    many. Other files' temporaries beside them are left alone: another process may be writing those."""
    prefixes: dict[Path, set[str]] = defaultdict(set)
    for path in map(Path, paths):
        prefixes[path.parent].add(_temporary_prefix(path))
    return _remove([p for folder, starts in prefixes.items() for p in _temporary_files(folder)
                    if p.name.startswith(tuple(starts))])


def file_digest(path: PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (``algorithm``: a :func:`hashlib.new` name), read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
