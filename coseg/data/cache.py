"""Decode each image (and mask) once per run, resized to S×S, held in memory as uint8; optionally kept on disk.

The disk cache holds one ``.npz`` per sample, named ``<slot>-<key>.npz``: the slot a hash of the sample's file paths,
S and mask encoding, the key a hash of (image path, mtime, size in bytes, inode, change time, the same of the mask, S,
mask encoding), so an edited or replaced file is decoded again (also one whose mtime was put back) and a second run
skips decoding; the sample of a damaged cache file is decoded again. The entries a sample's earlier files left in its
slot, which no run reads again, are removed when it is loaded, as are entries of the earlier naming (by key alone) and
temporary files of writes killed over an hour ago; entries of files since removed, or of another S, stay (another
run may use them): delete the folder to reclaim their space. Another process using the folder at the same time
loses at most an entry it then decodes again.
Files that cannot be used are skipped and listed in ``ImageCache.skipped``; the run goes on without them. A cache
folder that cannot be written (read-only, full, a file) is a ``ValueError`` naming it; one already holding every
entry is only read.

Decoded samples fill at most half of the machine's memory (``MEMORY_SHARE``): beyond that (e.g. Stanford Online
Products, 60k images per split), samples are read from the disk cache each time they are used instead of held,
and without a cache folder ``load`` refuses up front with the size it would need, instead of the run being killed
half-way for want of memory.
"""
from __future__ import annotations

import bisect
import contextlib
import hashlib
import io
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from coseg.atomic import TEMPORARY_MARK, PathLike, write_bytes_atomic
from coseg.data.io import DataFileError, printable, read_image_for_size, read_pair, resize_to
from coseg.data.layouts import Sample
from metric._checks import check_count

_FORMAT = 7  # bump when the stored arrays change meaning (2: black-and-white palette masks read by colour;
# 3: 16-bit colour masks read at full depth, TIFF masks with an orientation tag as stored; 4: masks resized on the
# image's pixel-centre grid; 5: those palette masks read by colour with any_nonzero too, the Internet layout's;
# 6: gray + alpha TIFF images decoded by Pillow, whose tiles OpenCV garbled; 7: an image side that shrinks while
# the other grows averaged by area, no longer sampled bilinearly)
MEMORY_SHARE = 0.5
_SLOT_CHARS = 16  # hex digits naming an entry's slot: its sample's file paths, S and mask encoding
_ENTRY = re.compile(r"[0-9a-f]{%d}-[0-9a-f]{40}\.npz" % _SLOT_CHARS)
_UNSLOTTED_ENTRY = re.compile(r"[0-9a-f]{40}\.npz")  # the earlier naming, by key alone: never read any more
ABANDONED_AFTER = 3600.0  # seconds since its last write after which a temporary cache file is a killed write's


def physical_memory() -> int:
    """The machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class Decoded:
    """One sample resized to S×S: ``image`` (S, S, 3) uint8 RGB, ``mask`` (S, S) uint8 0/1 or None, and the
    original ``size`` (H, W) in pixels (after EXIF rotation), at which evaluation happens."""

    image: np.ndarray
    mask: Optional[np.ndarray]
    size: tuple[int, int]


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 → ``(size, size, 3)``: area interpolation on a side that shrinks, bilinear on one that
    grows (:func:`coseg.data.io.resize_to`)."""
    return resize_to(image, (size, size))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """``(H, W)`` bool/0-1 → ``(size, size)`` uint8 0/1, each pixel the source pixel nearest its centre, on the
    pixel-centre grid :func:`resize_image` resamples the image on (OpenCV's plain nearest neighbour takes the
    source pixel at the corner instead: the mask sat half a pixel up and left of its image)."""
    return cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST_EXACT)


def decode_sample(sample: Sample, size: int) -> Decoded:
    """Read ``sample`` and resize it to ``size``×``size``; raises ``DataFileError`` naming the bad file."""
    if sample.mask is None:
        image, full = read_image_for_size(sample.image, size)
        return Decoded(resize_image(image, size), None, full)
    # a mask of the image's aspect ratio at another resolution is used as evaluate scores it: at its resolution
    image, mask = read_pair(sample.image, sample.mask, any_nonzero=sample.any_nonzero, resize_image=True)
    return Decoded(resize_image(image, size), resize_mask(mask, size), (image.shape[0], image.shape[1]))


def _fingerprint(path: Optional[Path]) -> bytes:
    """The file's path, modification time and size, and its inode and change time: a file replaced by one of the
    same size whose modification time was put back (cp -p, rsync -t, tar, unzip; or a filesystem of coarse time
    resolution) differs in those, which no tool sets."""
    if path is None:
        return b"-"
    stat = os.stat(path)
    return b"%s|%d|%d|%d|%d" % (os.fsencode(os.path.abspath(path)), stat.st_mtime_ns, stat.st_size, stat.st_ino,
                                stat.st_ctime_ns)


def _abandoned(path: Path) -> bool:
    """Whether ``path`` is the temporary file of a cache entry's write last written over ``ABANDONED_AFTER`` seconds
    ago: a killed process's (a write takes a moment; Ctrl-C removes its own)."""
    name = path.name
    written = name[1:name.index(TEMPORARY_MARK)] if name.startswith(".") and TEMPORARY_MARK in name else ""
    if not (_ENTRY.fullmatch(written) or _UNSLOTTED_ENTRY.fullmatch(written)):
        return False
    try:
        return path.stat().st_mtime < time.time() - ABANDONED_AFTER
    except OSError:
        return False  # renamed into place or removed meanwhile


def read_or_substitute(read: Callable[[int], Decoded], i: int, labels: torch.Tensor, substitute: bool,
                       what: str) -> Union[tuple[Decoded, dict[str, str]], str]:
    """Item ``i`` of a data set read through a cache (``read(j)``, which raises ``DataFileError`` for a sample no
    longer readable), as ``(decoded, marks)``, or the error message naming the file.

    Without ``substitute``: ``marks`` is {} and a failure gives its message. With it: ``marks`` is {"unreadable":
    failed file, "unreadable_problem": why}, both "" when item ``i`` was read, and a failed item is replaced by the
    next readable item of its group or class ``what`` (the items whose ``labels`` (N,) equal item ``i``'s, in index
    order after ``i``, then from the start); with none readable, ``ValueError`` naming the file."""
    try:
        return read(i), ({"unreadable": "", "unreadable_problem": ""} if substitute else {})
    except DataFileError as e:
        if not substitute:
            return str(e)
        failed = e
    peers = torch.nonzero(labels == labels[i]).flatten().tolist()
    start = bisect.bisect_right(peers, i)
    for j in [*peers[start:], *peers[:start]]:
        if j == i:
            continue
        try:
            return read(j), {"unreadable": str(failed.path), "unreadable_problem": failed.problem}
        except DataFileError:
            pass
    raise ValueError(f"{failed}; and none of the {len(peers) - 1} other image(s) of {what} can be read any more to "
                     "take its place: check that the data set's files are still in place")


def check_image_size(image_size: int) -> None:
    """Raise ``ValueError`` unless ``image_size``, the side images are resized to, is an integer >= 1."""
    check_count(image_size, 1, "image_size")


class ImageCache:
    """Decoded, resized samples (``cache[sample] -> Decoded``), filled by ``load``; in memory, or read from
    ``cache_dir`` on each use once they would fill more than ``MEMORY_SHARE`` of the machine's memory.

    ``cache_dir``: keep decoded arrays there across runs. ``progress``: show a tqdm bar. ``threads``: decoding
    threads (OpenCV releases the GIL), default ``min(2, cpu count)``."""

    def __init__(self, image_size: int, cache_dir: Optional[PathLike] = None, progress: bool = True,
                 threads: Optional[int] = None) -> None:
        check_image_size(image_size)
        self.image_size = image_size
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.progress = progress
        self.threads = threads or min(2, os.cpu_count() or 1)
        self.skipped: list[tuple[Path, str]] = []
        self.decoded = 0  # samples decoded from their files
        self.from_disk = 0  # samples read from cache_dir instead
        self._entries: dict[Sample, Union[Decoded, Path]] = {}  # a Path: read from the disk cache on each use
        self._failed: set[Sample] = set()
        self._held_bytes = 0
        self.on_disk = False  # new samples are read from cache_dir on each use, not held

    def __getitem__(self, sample: Sample) -> Decoded:
        """The decoded sample; ``DataFileError`` naming the file when it is read from disk and neither its cache file
        nor its source can be read any more (removed or damaged since ``load``)."""
        entry = self._entries[sample]
        if isinstance(entry, Decoded):
            return entry
        stored = self._read_disk(entry, sample.mask is not None)
        return stored if stored is not None else decode_sample(sample, self.image_size)  # cache file removed

    def __contains__(self, sample: object) -> bool:
        return sample in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def load(self, samples: Sequence[Sample]) -> list[Sample]:
        """Decode the samples not held yet; return those available, in the given order. Failures are skipped and
        recorded in ``skipped`` as (file, reason)."""
        todo = list(dict.fromkeys(s for s in samples if s not in self._entries and s not in self._failed))
        if todo:
            self._check_memory(todo)
            slots = self._disk_slots()
            with ThreadPoolExecutor(self.threads) as pool:
                results = list(tqdm(pool.map(self._fetch, todo), total=len(todo), disable=not self.progress,
                                    desc=f"decoding {self.image_size}px", unit="img"))
            self._remove(disk.with_name(name) for _, _, disk in results if disk is not None  # their files' earlier
                         for name in slots.get(disk.name[:_SLOT_CHARS], ()) if name != disk.name)  # entries
            for sample, (result, from_disk, _) in zip(todo, results):
                if isinstance(result, DataFileError):
                    self._failed.add(sample)
                    self.skipped.append((result.path, result.problem))
                else:
                    self._entries[sample] = result
                    if isinstance(result, Decoded):
                        self._held_bytes += self._sample_bytes(sample)
                    self.from_disk += from_disk
                    self.decoded += not from_disk
        return [s for s in samples if s in self._entries]

    def _sample_bytes(self, sample: Sample) -> int:
        return self.image_size ** 2 * (3 + (sample.mask is not None))

    def _check_memory(self, todo: Sequence[Sample]) -> None:
        """Switch to reading from disk, or refuse, when ``todo`` would not fit in the memory share."""
        need = self._held_bytes + sum(self._sample_bytes(s) for s in todo)
        share = MEMORY_SHARE / int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun: one cache per process
        if self.on_disk or need <= share * physical_memory():
            return
        if self.cache_dir is None:
            raise ValueError(f"{len(self._entries) + len(todo)} images decoded at {self.image_size} px would take "
                             f"{need / 2 ** 30:.1f} GB of memory, more than {share:.0%} of this machine's "
                             f"{physical_memory() / 2 ** 30:.1f} GB: pass --cache-dir to read them from disk instead "
                             f"(about as much disk space), or a smaller --image-size")
        self.on_disk = True

    def _disk_path(self, sample: Sample) -> Optional[Path]:
        if self.cache_dir is None:
            return None
        try:
            key = b"|".join([_fingerprint(sample.image), _fingerprint(sample.mask),
                             b"%d|%d|%d" % (self.image_size, sample.any_nonzero, _FORMAT)])
        except OSError:
            return None  # the file is missing: decoding reports it
        files = [b"-" if path is None else os.fsencode(os.path.abspath(path)) for path in (sample.image, sample.mask)]
        slot = hashlib.sha1(b"\0".join([*files, b"%d|%d" % (self.image_size, sample.any_nonzero)])).hexdigest()
        return self.cache_dir / f"{slot[:_SLOT_CHARS]}-{hashlib.sha1(key).hexdigest()}.npz"

    def _disk_slots(self) -> dict[str, list[str]]:
        """The names of the cache folder's entries by slot (none without a folder); removes its entries of the
        earlier naming and the temporary files of cache writes killed over ``ABANDONED_AFTER`` seconds ago."""
        slots: dict[str, list[str]] = {}
        if self.cache_dir is None:
            return slots
        try:
            names = os.listdir(self.cache_dir)
        except OSError:
            return slots  # no folder yet, or not one: writing the first entry names the problem
        for name in names:
            if _ENTRY.fullmatch(name):
                slots.setdefault(name[:_SLOT_CHARS], []).append(name)
        self._remove(self.cache_dir / name for name in names if _UNSLOTTED_ENTRY.fullmatch(name)
                     or _abandoned(self.cache_dir / name))
        return slots

    @staticmethod
    def _remove(paths: Iterable[PathLike]) -> None:
        """Delete the files at ``paths`` that are still there and can be (a read-only cache folder keeps them)."""
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _read_disk(self, path: Path, with_mask: bool) -> Optional[Decoded]:
        """The stored arrays, or None when absent or unusable (then they are decoded and stored again)."""
        s = self.image_size
        try:
            with np.load(path, allow_pickle=False) as stored:
                image, size = stored["image"], stored["size"]
                mask = stored["mask"] if with_mask else None
        # a damaged file fails in many ways: BadZipFile, EOFError, NotImplementedError (a garbled zip version or
        # compression method), RuntimeError (a garbled encryption flag), ValueError (a garbled .npy header), TypeError
        # (a bare .npy, not an .npz), ...
        except Exception:
            return None
        if (image.shape != (s, s, 3) or image.dtype != np.uint8 or size.shape != (2,) or size.dtype.kind not in "iu"
                or (with_mask and (mask.shape != (s, s) or mask.dtype != np.uint8))):
            return None
        return Decoded(image, mask, (int(size[0]), int(size[1])))

    def _fetch(self, sample: Sample) -> tuple[Union[Decoded, Path, DataFileError], bool, Optional[Path]]:
        """(decoded sample, or its disk-cache file when ``on_disk``, or the error met; whether it came from the
        disk cache; its disk-cache file, None without a cache folder or when a file is missing)."""
        disk = self._disk_path(sample)
        if disk is not None:
            stored = self._read_disk(disk, sample.mask is not None)
            if stored is not None:
                return (disk if self.on_disk else stored), True, disk
        try:
            decoded = decode_sample(sample, self.image_size)
        except DataFileError as e:
            return e, False, disk
        if disk is not None:
            arrays = {"image": decoded.image, "size": np.asarray(decoded.size)}
            if decoded.mask is not None:
                arrays["mask"] = decoded.mask
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            try:
                # not fsynced: an entry a power cut damages is decoded again (see the module docstring)
                write_bytes_atomic(disk, buffer.getvalue(), fsync=False)
            except OSError as e:  # read-only, full, or not a folder: bad input, not a crash
                why = "it is a file, not a folder" if disk.parent.is_file() else e.strerror or e  # not "File exists"
                raise ValueError(f"cannot write to the cache folder {printable(disk.parent)} ({why}); choose another "
                                 "--cache-dir or leave it out") from None
        return (disk if self.on_disk and disk is not None else decoded), False, disk
