"""``coseg retrieval export``: embeddings, manifest and faiss index of an image folder, resumable and atomic.

Output folder:
- ``embeddings.npy``: float32 (N, D), row i = the i-th readable image in sorted path order;
- ``manifest.csv``: columns ``path`` (relative to the input folder, '/'-separated; undecodable bytes of a name as
  ``\\xNN``) and ``label`` (the class folder holding the image, empty for images directly in the input folder or
  its ``images`` folder), row i = embedding row i;
- ``index.faiss``: the embeddings in a faiss index (exact ``flat`` L2, or ``hnsw`` for very large folders);
- ``model.safetensors``: a copy of the model, so ``search`` embeds queries the same way;
- ``stamps.npy``: int64 (N, 6), row i = the file behind embedding row i (:data:`STAMP_COLUMNS`: a hash of its path,
  its modification time, byte size, inode and change time, and a hash of its bytes), so that a later export by the
  same model at the same size embeds only new and changed images: a file of the same path, modification time and
  size is taken as unchanged if its inode and change time are too, else if its bytes are (a file replaced by one of
  the same size whose modification time was put back, by ``cp -p``, ``rsync -t`` or a restored backup, is embedded
  again; an export folder moved with its images to another machine, where inodes and change times differ, reads
  each image once to tell, but embeds none again);
- ``skipped.csv``: what was left out, with the reason: unreadable images, unusable entries of the folder (broken
  links, unreadable folders) and, when it has an ``images`` folder, the images and folders beside it;
- ``export.json``: what was exported, with the SHA-1 of ``index.faiss`` (``index_sha1``) and of the paths of
  ``manifest.csv`` (``manifest_paths_sha1``; its labels may be edited), so that ``search`` refuses either copied from
  another export; removed before the other files are replaced and written last, so a folder without it holds no
  finished export.

Images are embedded in shards of ``shard_size``; each finished shard is stored in ``.shards/`` under a name that
hashes the model file, the image size and its images (path, modification time, size, inode, change time), so an
interrupted export run again continues with the first unfinished shard, and shards whose images changed are embedded
again. The final files are assembled from the shards (each written atomically), then ``.shards/`` is removed. Once an
export has finished, running it again after images were added, changed or removed embeds only the new and changed
ones: the others' rows are taken from the finished export, if it was made by the same model file at the same image
size. An export holds the lock of ``.export.lock`` in the output folder while it runs: a second export into that
folder is refused.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from apps.retrieval.evaluate import load_for_retrieval
from apps.retrieval.inference import image_batches
from apps.retrieval.model import RetrievalModel
from coseg.atomic import PathLike, atomic_path, file_digest, remove_temporaries, write_bytes_atomic, write_text_atomic
from coseg.data import NOTE_KINDS, find_samples, printable
from coseg.engine.run_lock import folder_lock
from coseg.report.files import record_path
from coseg.inference import ImageFileDataset
from metric._checks import check_count
from metric.retrieval.faiss_backend import import_faiss

SHARD_DIR = ".shards"
INDEX_TYPES = ("flat", "hnsw")
HNSW_LINKS = 32
FILES = ("embeddings.npy", "manifest.csv", "index.faiss", "model.safetensors", "skipped.csv", "export.json")
STAMPS = "stamps.npy"  # not in FILES: exports written before it existed are finished ones (it only saves work)
# The columns of stamps.npy. Earlier versions' (N, 3) stamps (path, modification time, size) cannot tell a file replaced
# by one of the same size and time: their rows are not used.
STAMP_COLUMNS = ("path", "mtime_ns", "size", "inode", "ctime_ns", "content")
LOCK = ".export.lock"
# export.json's digests of index.faiss and of manifest.csv's paths (both absent from records of earlier versions)
INDEX_DIGEST, MANIFEST_DIGEST = "index_sha1", "manifest_paths_sha1"


@dataclass
class ExportReport:
    output: Path
    images: int = 0
    dim: int = 0
    shards: int = 0
    shards_reused: int = 0
    images_reused: int = 0  # rows taken from the finished export this run replaced
    up_to_date: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Item:
    path: Path
    relative: str
    label: str


# What the folders layout reports about masks, which an export does not read: an image without a mask is exported,
# and a mask is no image to export; a note on how masks were paired leaves nothing out.
MASK_PROBLEMS = frozenset({"image without mask", "mask without image", "ambiguous mask"}) | NOTE_KINDS


def scan_images(input_dir: Path) -> tuple[list[Item], list[tuple[Path, str]]]:
    """Every image under ``input_dir`` (under its ``images`` folder if it has one, as in the ``folders`` layout) in
    sorted relative-path order, labelled with the folder holding it relative to that (empty directly in it); and the
    entries left out (broken links, unreadable folders, images outside the ``images`` folder) as (path, problem).
    What the layout leaves out only because of masks is kept: images that share a stem (which one would
    ``a.png`` be the mask of?) and images beside a class folder named like the folder they are in."""
    scan = find_samples(input_dir, "folders")
    first = scan.samples[0].image.relative_to(input_dir).parts
    root = input_dir / first[0] if len(first) > 1 and first[0].lower() == "images" else input_dir
    images = [s.image for s in scan.samples]
    problems = []
    for p in scan.problems:
        if p.kind == "ambiguous image" or (p.kind == "outside any group" and p.path.parent == root):
            images.append(p.path)
        elif p.kind not in MASK_PROBLEMS:
            problems.append((p.path, p.kind + (f" ({p.detail})" if p.detail else "")))
    items = [Item(path, path.relative_to(input_dir).as_posix(),
                  "" if path.parent == root else path.parent.relative_to(root).as_posix()) for path in images]
    return sorted(items, key=lambda item: item.relative), problems


def _digest(*parts: Union[str, bytes]) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def manifest_digest(paths: Iterable[str]) -> str:
    """The ``manifest_paths_sha1`` of an export whose ``manifest.csv`` holds ``paths`` in row order."""
    return _digest(*paths)


Stamp = tuple[int, int, int, int, int]


def _hash60(digest: str) -> int:
    return int(digest[:15], 16)  # 60 bits: held by int64


def file_stamp(item: Item) -> Stamp:
    """An image's (path hash, modification time in ns, byte size, inode, change time in ns): changes when the file is
    edited or replaced, also by one of the same size whose modification time was put back (which no tool sets the
    inode and change time of); for a file gone (or unreadable) since the folder was scanned, (path hash, −1, −1, −1,
    −1) (it is then skipped as unreadable)."""
    path_hash = _hash60(_digest(item.relative))
    try:
        stat = os.stat(item.path)
    except OSError:
        return path_hash, -1, -1, -1, -1
    return path_hash, stat.st_mtime_ns, stat.st_size, stat.st_ino, stat.st_ctime_ns


def content_hash(path: Path) -> int:
    """A hash of the bytes of the file at ``path`` (60 bits of their SHA-1), −1 when it cannot be read."""
    try:
        return _hash60(file_digest(path, "sha1"))
    except OSError:
        return -1


Earlier = dict[tuple[int, int, int], tuple[int, int, int, int]]
"""The rows of a finished export: (path hash, modification time, size) → (row, inode, change time, content hash)."""


def reused_row(item: Item, stamp: Stamp, earlier: Earlier) -> tuple[Optional[int], int]:
    """(the row of the finished export ``earlier`` that holds ``item``'s embedding, or None when it must be embedded
    again; the hash of its bytes). A row of the same path, modification time and size is used when the file's inode
    and change time are the row's too, else when its bytes are (read now: before the image is decoded, so that a file
    replaced meanwhile is embedded again by the next export). The bytes of a file without a row are hashed too."""
    if stamp[1] < 0:
        return None, -1
    entry = earlier.get(stamp[:3])
    if entry is not None and entry[1:3] == stamp[3:]:
        return entry[0], entry[3]
    content = content_hash(item.path)
    return (entry[0] if entry is not None and content >= 0 and entry[3] == content else None), content


def previous_rows(output_dir: Path, done: dict, source: dict[str, str], size: int) -> tuple[np.ndarray, Earlier]:
    """The embeddings of the finished export whose record is ``done`` (memory-mapped) and its rows (:data:`Earlier`),
    when it embedded the same input folder with the same model file at the same image size; else an empty array and
    {}. An export written before ``stamps.npy`` existed or held its :data:`STAMP_COLUMNS`, or whose files disagree,
    gives nothing."""
    nothing = np.empty((0, 0), np.float32), {}
    if not done or any(done.get(name) != value for name, value in source.items()) or done.get("image_size") != size:
        return nothing
    try:
        stamps = np.load(output_dir / STAMPS, allow_pickle=False)
        embeddings = np.load(output_dir / "embeddings.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return nothing
    if (stamps.dtype != np.int64 or stamps.ndim != 2 or stamps.shape[1] != len(STAMP_COLUMNS) or embeddings.ndim != 2
            or embeddings.dtype != np.float32 or not stamps.shape[0] == embeddings.shape[0] == done.get("images")):
        return nothing
    return embeddings, {tuple(stamp[:3]): (row, *stamp[3:]) for row, stamp in enumerate(stamps.tolist())
                        if stamp[1] >= 0}


def _stamp_text(item: Item, stamp: Stamp) -> str:
    """The part of the shard and export keys an image gives."""
    return f"{item.relative}|-" if stamp[1] < 0 else f"{item.relative}|" + "|".join(map(str, stamp[1:]))


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


@torch.no_grad()
def embed_shard(model: RetrievalModel, items: Sequence[Item], image_size: int, device: torch.device,
                batch_size: int, workers: int,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """(embeddings (n, D) float32 of the readable images, their positions in ``items`` (n,), [(position, reason)]
    of the unreadable ones); ``progress``: a bar over the batches."""
    dataset = ImageFileDataset([item.path for item in items], image_size)
    rows, positions, errors = [], [], []
    for indices, images, failed in image_batches(dataset, device, batch_size, workers, progress):
        errors.extend(failed)
        if len(indices):
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                rows.append(model(images).float().cpu().numpy())
            positions.append(indices.numpy())
    dim = model.embedding_dim
    embeddings = np.concatenate(rows) if rows else np.empty((0, dim), np.float32)
    return embeddings, (np.concatenate(positions) if positions else np.empty(0, np.int64)), sorted(errors)


def _embed_missing(model: RetrievalModel, shard: Sequence[Item], found: Sequence[Optional[int]],
                   earlier: np.ndarray, image_size: int, device: torch.device, batch_size: int,
                   workers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A shard's (embeddings, positions, failed positions, their reasons), as stored: the rows of ``earlier`` where
    ``found`` gives one for an image of ``shard``, the others embedded by ``model`` (readable ones only)."""
    todo = np.array([p for p, row in enumerate(found) if row is None], np.int64)
    embedded, positions, errors = (embed_shard(model, [shard[p] for p in todo], image_size, device, batch_size,
                                               workers) if todo.size else (None, np.empty(0, np.int64), []))
    kept = np.array([p for p, row in enumerate(found) if row is not None], np.int64)
    positions = np.concatenate([kept, todo[positions]])
    parts = [np.asarray(earlier[[found[p] for p in kept.tolist()]], np.float32)] if kept.size else []
    embeddings = np.concatenate(parts + ([embedded] if embedded is not None else []))
    order = np.argsort(positions, kind="stable")
    return (embeddings[order], positions[order], np.array([todo[p] for p, _ in errors], np.int64),
            np.array([reason for _, reason in errors], dtype=str))


def _load_shard(path: Path) -> Optional[tuple[np.ndarray, ...]]:
    """A stored shard's (embeddings, positions, failed positions, their reasons, the hash of each image's bytes);
    None when it cannot be used."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return tuple(stored[name] for name in ("embeddings", "positions", "failed", "reasons", "contents"))
    except (OSError, ValueError, KeyError, EOFError):
        return None


def build_index(embeddings: np.ndarray, kind: str):  # noqa: ANN201 - a faiss index
    """A faiss index over ``embeddings`` (N, D) float32 searching squared L2 distances."""
    if kind not in INDEX_TYPES:
        raise ValueError(f"unknown index type '{kind}'; valid: {', '.join(INDEX_TYPES)}")
    faiss = import_faiss()
    dim = embeddings.shape[1]
    index = faiss.IndexFlatL2(dim) if kind == "flat" else faiss.IndexHNSWFlat(dim, HNSW_LINKS)
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


def load_snapshot(checkpoint: Path, device: torch.device,
                  image_size: Optional[int]) -> tuple[RetrievalModel, int, bytes]:
    """The model of ``checkpoint`` and its inference size (``load_for_retrieval``) with the bytes of the file it was
    loaded from, which the export hashes and copies: a ``ValueError`` when the file changed while it was loaded (a
    training saving a better model), as the copy would be another model than the one that embedded the images."""
    try:
        snapshot = checkpoint.read_bytes()
    except OSError:
        snapshot = b""  # a missing or unreadable file: load_for_retrieval names it
    model, size = load_for_retrieval(checkpoint, device, image_size)
    if checkpoint.read_bytes() != snapshot:
        raise ValueError(f"{printable(checkpoint)} was replaced while export loaded it (is a training writing it?); "
                         "export again")
    return model, size, snapshot


def read_record(path: Path) -> dict:
    """The contents of an export's ``export.json``; a file that is not one is a ``ValueError`` naming it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{printable(path)}: not the record of a `coseg retrieval export` ({e})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{printable(path)}: not the record of a `coseg retrieval export` (no JSON object)")
    return record


def previous_record(record: Path, overwrite: bool) -> dict:
    """The contents of the ``export.json`` at ``record`` ({} when there is none). A file that is no export's record
    (not a JSON object, no ``key``) is a ``ValueError`` naming it, or with ``overwrite`` taken for none: the export
    then replaces it."""
    if not record.is_file():
        return {}
    try:
        done = read_record(record)
        if "key" not in done:
            raise ValueError(f"{printable(record)}: not the record of a `coseg retrieval export` (no 'key' entry)")
    except ValueError as e:
        if overwrite:
            return {}
        raise ValueError(f"{e}: --overwrite replaces it, or choose another --output") from None
    return done


def _csv(rows: list[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def export_folder(checkpoint: PathLike, input_dir: PathLike, output_dir: PathLike, image_size: Optional[int] = None,
                  batch_size: int = 32, device: Union[str, torch.device] = "cpu", workers: int = 0,
                  shard_size: int = 1024, index: str = "flat", progress: bool = False,
                  overwrite: bool = False) -> ExportReport:
    """Export the images under ``input_dir`` into ``output_dir`` (see the module docstring). Never writes inside
    ``input_dir``. Raises ``ValueError`` for a ``batch_size`` or ``shard_size`` no integer >= 1 or ``workers`` no
    integer >= 0 (numpy integers are taken), when ``output_dir`` is a file, when no image is readable, when another
    export is writing to ``output_dir``, when ``checkpoint`` is replaced while it is loaded (``load_snapshot``), and,
    unless ``overwrite``, when ``output_dir`` holds a finished export of another folder or by another model, or files
    named like an export's that no export wrote."""
    input_dir, output_dir, checkpoint = Path(input_dir), Path(output_dir), Path(checkpoint)
    if not input_dir.is_dir():
        raise ValueError(f"{printable(input_dir)}: " + ("a file, not a folder of images" if input_dir.exists()
                                                        else "input folder not found"))
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"{printable(output_dir)}: a file, not a folder to export into; choose another output folder")
    if output_dir.resolve().is_relative_to(input_dir.resolve()):
        raise ValueError(f"{printable(output_dir)} is inside the input folder {printable(input_dir)}: choose an output "
                         "folder elsewhere (export never writes into its input)")
    batch_size, shard_size = check_count(batch_size, 1, "batch_size"), check_count(shard_size, 1, "shard_size")
    workers = check_count(workers, 0, "workers")  # DataLoader's own message names no option, after .shards/ is made
    if index not in INDEX_TYPES:
        raise ValueError(f"unknown index type '{index}'; valid: {', '.join(INDEX_TYPES)}")
    device = torch.device(device)
    model, size, snapshot = load_snapshot(checkpoint, device, image_size)
    items, problems = scan_images(input_dir)
    model_digest = hashlib.sha1(snapshot).hexdigest()
    stamps = [file_stamp(item) for item in items]
    texts = [_stamp_text(item, stamp) for item, stamp in zip(items, stamps)]
    starts = range(0, len(items), shard_size)
    keys = [_digest(model_digest, str(size), *texts[start:start + shard_size])[:20] for start in starts]
    export_key = _digest(index, model_digest, str(size), *texts, *(f"{path}|{reason}" for path, reason in problems))
    report = ExportReport(output_dir, shards=len(keys))
    record = output_dir / "export.json"
    source = {"input": printable(input_dir.resolve()), "model": model_digest}
    with folder_lock(output_dir, LOCK, "another `coseg retrieval export` is writing there"):
        done = previous_record(record, overwrite)
        shard_dir = output_dir / SHARD_DIR
        # a record of an earlier version, without the index's digest, is written again (from the earlier rows)
        if done.get("key") == export_key and INDEX_DIGEST in done and all((output_dir / n).is_file() for n in FILES):
            shutil.rmtree(shard_dir, ignore_errors=True)  # left by a run killed as it removed them
            report.images, report.dim, report.up_to_date = done["images"], done["dim"], True
            report.skipped = [tuple(pair) for pair in done["skipped"]]  # type: ignore[misc]
            return report
        if done and not overwrite and any(done.get(name) != value for name, value in source.items()):
            other = (f"another folder, {done.get('input')}" if done.get("input") != source["input"]
                     else f"the folder by another model (then in {done.get('checkpoint')})")
            raise ValueError(f"{printable(output_dir)} holds an export of {other}: --overwrite replaces it, or choose "
                             "another --output")
        foreign = [name for name in FILES if (output_dir / name).is_file()]
        if foreign and not done and not shard_dir.is_dir() and not overwrite:  # no export's, not even a killed one's
            raise ValueError(f"{printable(output_dir)} holds {', '.join(foreign)}, not written by an export: "
                             "--overwrite replaces them, or choose another --output")
        for folder in (output_dir, shard_dir):  # left by a killed run; not in other folders below (a training's)
            remove_temporaries(folder)
        shard_dir.mkdir(parents=True, exist_ok=True)
        earlier, earlier_rows = previous_rows(output_dir, done, source, size)
        parts = []
        bar = tqdm(total=len(items), desc="exporting", unit="img", disable=not progress, leave=False)
        for number, (start, key) in enumerate(zip(starts, keys)):
            shard = items[start:start + shard_size]
            path = shard_dir / f"{number:06d}-{key}.npz"
            stored = _load_shard(path) if path.is_file() else None
            if stored is None:
                found, contents = zip(*(reused_row(item, stamp, earlier_rows)
                                        for item, stamp in zip(shard, stamps[start:start + shard_size])))
                stored = (*_embed_missing(model, shard, found, earlier, size, device, batch_size, workers),
                          np.array(contents, np.int64))
                report.images_reused += sum(row is not None for row in found)
                _save_npz(path, embeddings=stored[0], positions=stored[1], failed=stored[2], reasons=stored[3],
                          contents=stored[4])
            else:
                report.shards_reused += 1
            parts.append((start, shard, stored))
            bar.update(len(shard))
        bar.close()
        del earlier  # the memory map of the embeddings.npy about to be replaced
        rows, manifest, skipped = [], [("path", "label")], [("path", "reason")]
        row_stamps = []
        for start, shard, (embeddings, positions, failed, reasons, contents) in parts:
            rows.append(embeddings)
            row_stamps.extend((*stamps[start + p], int(contents[p])) for p in positions.tolist())
            manifest.extend((printable(shard[p].relative), printable(shard[p].label)) for p in positions.tolist())
            skipped.extend((printable(shard[p].relative), str(r).removeprefix(f"{printable(shard[p].path)}: "))
                           for p, r in zip(failed.tolist(), reasons.tolist()))
        skipped.extend((printable(Path(os.path.relpath(path, input_dir)).as_posix()), reason)
                       for path, reason in problems)
        embeddings = np.concatenate(rows).astype(np.float32, copy=False) if rows else np.empty((0, 0), np.float32)
        if embeddings.shape[0] == 0:
            shutil.rmtree(shard_dir, ignore_errors=True)  # shards of failures only: nothing to resume
            raise ValueError(f"no readable image under {printable(input_dir)}"
                             + (f"; first problem: {skipped[1][0]}: {skipped[1][1]}" if len(skipped) > 1 else ""))
        record.unlink(missing_ok=True)  # until the new record is written, a half-replaced folder is no finished export
        with atomic_path(output_dir / "embeddings.npy") as tmp:
            np.save(tmp, embeddings)
        write_text_atomic(output_dir / "manifest.csv", _csv(manifest))
        write_text_atomic(output_dir / "skipped.csv", _csv(skipped))
        # serialized here rather than written by faiss, which takes only paths it can encode as UTF-8
        index_bytes = import_faiss().serialize_index(build_index(embeddings, index)).tobytes()
        write_bytes_atomic(output_dir / "index.faiss", index_bytes)
        write_bytes_atomic(output_dir / "model.safetensors", snapshot)
        with atomic_path(output_dir / STAMPS) as tmp:
            np.save(tmp, np.array(row_stamps, np.int64).reshape(-1, len(STAMP_COLUMNS)))
        report.images, report.dim, report.skipped = embeddings.shape[0], embeddings.shape[1], skipped[1:]
        finished: dict[str, Any] = {"key": export_key}
        record_path(finished, "checkpoint", checkpoint, output_dir)  # absolute: told in errors run from elsewhere
        finished.update({**source, "image_size": size, "images": report.images, "dim": report.dim, "index": index,
                         "metric": "l2", INDEX_DIGEST: hashlib.sha1(index_bytes).hexdigest(),
                         MANIFEST_DIGEST: manifest_digest(row[0] for row in manifest[1:]),
                         "skipped": [list(pair) for pair in report.skipped]})
        write_text_atomic(record, json.dumps(finished, indent=2, ensure_ascii=False) + "\n")
        shutil.rmtree(shard_dir, ignore_errors=True)
        return report
