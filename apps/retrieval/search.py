"""``coseg retrieval search``: the k nearest exported images of query images, with their distances."""
from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from apps.retrieval.export import (FILES, INDEX_DIGEST, MANIFEST_DIGEST, STAMPS, Item, embed_shard, load_snapshot,
                                   manifest_digest, read_record, scan_images)
from coseg.atomic import PathLike, write_text_atomic
from coseg.data import LayoutError, printable
from metric._checks import check_count
from metric.retrieval.faiss_backend import import_faiss

SHOWN_UNREAD = 5  # unreadable queries named in the error when none can be read
MANIFEST_COLUMNS = ("path", "label")

@dataclass(frozen=True)
class Neighbour:
    """The ``rank``-th (1 = nearest) exported image for ``query``: its manifest path and label, and its Euclidean
    distance to the query in embedding units."""

    query: str
    rank: int
    path: str
    label: str
    distance: float


@dataclass
class SearchResult:
    """The neighbours of every readable query, nearest first, and the unreadable queries and unusable entries of the
    query folders ("<file>: <problem>"); ``exported``: how many images the searched export holds; ``warnings``: what
    could not be checked (an export written by an earlier version)."""

    neighbours: list[Neighbour]
    skipped: list[str]
    exported: int
    warnings: list[str] = field(default_factory=list)


def query_images(queries: Sequence[PathLike]) -> tuple[list[Item], list[str]]:
    """Query files as given, and every image under the given folders, each file once (the first path naming it); and
    the entries of those folders that could not be used ("<path>: <problem>", e.g. broken links; a folder without
    images)."""
    if isinstance(queries, (str, os.PathLike)):
        raise TypeError(f"queries must be a list of image files or folders, got the single path {queries!r}: pass "
                        "[path]")
    items, problems = [], []
    for query in map(Path, queries):
        if query.is_dir():
            try:
                found, unusable = scan_images(query)
            except LayoutError:  # an existing folder without images: listed, the other queries searched
                problems.append(f"{printable(query)}: a folder without images")
                continue
            items.extend(Item(i.path, str(i.path), i.label) for i in found)
            problems.extend(f"{printable(path)}: {problem}" for path, problem in unusable)
        elif query.is_file():
            items.append(Item(query, str(query), ""))
        else:
            raise ValueError(f"{printable(query)}: query image not found")
    first: dict[str, Item] = {}
    for item in items:
        first.setdefault(os.path.realpath(item.path), item)
    return list(first.values()), problems


def _record_unchanged(record: Path, info: dict) -> bool:
    try:
        return read_record(record) == info
    except FileNotFoundError:
        return False


def read_manifest(path: Path) -> list[dict[str, str]]:
    """The rows of an export's ``manifest.csv`` (UTF-8; a byte-order mark, as spreadsheets write, is allowed; a row
    cut short has empty values for its missing columns); a file that is not one (another encoding, no ``path`` or
    ``label`` column) is a ``ValueError`` naming it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, restval="")
            rows, columns = list(reader), reader.fieldnames or []  # an empty file's: read while it is open
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{printable(path)}: not the manifest of an export ({e}); export again") from None
    missing = [name for name in MANIFEST_COLUMNS if name not in columns]
    if missing:
        raise ValueError(f"{printable(path)}: not the manifest of an export (no column {', '.join(missing)}); export "
                         "again")
    return rows


def read_index(path: Path, data: Optional[bytes] = None):  # noqa: ANN201 - a faiss index
    """The faiss index in the file ``path`` (whose bytes ``data`` are, when given); a file faiss cannot read
    (damaged, cut short), or an index that does not search squared Euclidean distances (inner products: its values
    are no distances), is a ``ValueError`` naming it."""
    faiss = import_faiss()
    try:
        index = faiss.deserialize_index(np.frombuffer(path.read_bytes() if data is None else data, np.uint8))
    except RuntimeError:  # faiss tells only its own source lines
        raise ValueError(f"{printable(path)}: not a faiss index, or a damaged one; export again") from None
    if index.metric_type != faiss.METRIC_L2:
        raise ValueError(f"{printable(path)}: an index of another metric (faiss metric_type {index.metric_type}) than "
                         f"the Euclidean distances of an export (METRIC_L2, {faiss.METRIC_L2}); export again")
    return index


def check_digests(record: Path, info: dict, index_bytes: bytes, manifest: list[dict[str, str]]) -> list[str]:
    """Raise ``ValueError`` when ``index.faiss`` (its bytes ``index_bytes``) or the paths of ``manifest.csv`` (its
    rows ``manifest``) beside the export record ``record`` (contents ``info``) are not those it was written with
    (damaged, or copied from another export: the index's rows would name the wrong images); a record of an earlier
    version, which holds no digests, gives a warning instead. Call it before faiss reads ``index_bytes``: a file
    export.json does not vouch for could make faiss allocate what its header claims."""
    if INDEX_DIGEST not in info:
        return [f"{printable(record)} records no digest of index.faiss and manifest.csv (an export by an earlier "
                f"version), so it cannot be checked that they are this export's: run the export again to record them"]
    found = {INDEX_DIGEST: hashlib.sha1(index_bytes).hexdigest(),
             MANIFEST_DIGEST: manifest_digest(row["path"] for row in manifest)}
    for key, name in ((INDEX_DIGEST, "index.faiss"), (MANIFEST_DIGEST, "manifest.csv")):
        if found[key] != info.get(key):
            raise ValueError(f"{printable(record.parent / name)} is not the {name} {printable(record)} was written "
                             f"with (its {key} differs: damaged, or copied from another export?): the rows of "
                             "index.faiss would name the wrong images of manifest.csv; export again")
    return []


def refuse_to_overwrite(output: Path, index_dir: Path, items: Sequence[Item]) -> None:
    """Raise ``ValueError`` when ``output`` is a folder, or one of the export's files or a query image: the table would
    replace what search reads."""
    if output.is_dir():
        raise ValueError(f"--output {printable(output)} is a folder: give the path of the CSV file to write")
    target = os.path.realpath(output)
    if any(target == os.path.realpath(index_dir / name) for name in (*FILES, STAMPS)):
        raise ValueError(f"--output {printable(output)} is a file of the export in {printable(index_dir)}: the table "
                         "would replace it; choose another file")
    if any(target == os.path.realpath(item.path) for item in items):
        raise ValueError(f"--output {printable(output)} is a query image: the table would replace it; choose another "
                         "file")


def search_export(index_dir: PathLike, queries: Sequence[PathLike], k: int = 10,
                  device: Union[str, torch.device] = "cpu", batch_size: int = 32,
                  output: Optional[PathLike] = None, progress: bool = False) -> SearchResult:
    """Embed ``queries`` (image files or folders) with the model of the export in ``index_dir`` and search its
    index: the ``k`` nearest per query (every exported image when it holds fewer), nearest first; an image named twice
    is searched once. Unreadable queries are skipped and listed. With ``output``, the rows are also written there as
    CSV (query, rank, path, label, distance). Raises ``ValueError`` for a ``k`` or ``batch_size`` that is no integer
    >= 1 (numpy integers are taken), when no query is readable (or given), when the export is unfinished, damaged,
    inconsistent (its ``model.safetensors`` another model than the one that embedded it, its ``index.faiss`` or the
    paths of its ``manifest.csv`` another export's, too) or replaced while it is read, and when ``output`` is a
    folder, one of the export's files or a query image. An export written before ``export.json`` recorded those
    digests is searched with a warning (``SearchResult.warnings``)."""
    k = check_count(k, 1, "k")
    batch_size = check_count(batch_size, 1, "batch_size")  # DataLoader's own message names no argument, after loading
    index_dir = Path(index_dir)
    record = index_dir / "export.json"
    if not record.is_file():
        why = ("export.json missing" if index_dir.is_dir() else
               "a file, not a folder" if index_dir.exists() else "no such folder")
        raise ValueError(f"{printable(index_dir)}: no finished export here ({why}); run `coseg retrieval export` first")
    missing = [name for name in FILES if not (index_dir / name).is_file()]
    if missing:
        raise ValueError(f"{printable(index_dir)}: incomplete export ({', '.join(missing)} missing); export again")
    info = read_record(record)
    recorded_size = info.get("image_size")
    if type(recorded_size) is not int or recorded_size < 1:
        raise ValueError(f"{printable(record)}: image_size {recorded_size!r} is no image size in pixels (a damaged "
                         "record); export again")
    items, unusable = query_images(queries)
    if not items and not unusable:
        raise ValueError("no query image given (queries is empty)")
    if output is not None:
        refuse_to_overwrite(Path(output), index_dir, items)
    device = torch.device(device)
    model_file = index_dir / "model.safetensors"
    model, size, snapshot = load_snapshot(model_file, device, recorded_size)  # the bytes it loaded, hashed below
    index_file = index_dir / "index.faiss"
    index_bytes = index_file.read_bytes()
    manifest = read_manifest(index_dir / "manifest.csv")
    if not _record_unchanged(record, info):
        raise ValueError(f"{printable(index_dir)}: the export was replaced while search read it (an export is writing "
                         "there); search again when it ends")
    warnings = check_digests(record, info, index_bytes, manifest)
    index = read_index(index_file, index_bytes)
    if index.ntotal != len(manifest):
        raise ValueError(f"{printable(index_dir)}: index.faiss holds {index.ntotal} vectors but manifest.csv "
                         f"{len(manifest)} rows; export again")
    if index.d != model.embedding_dim:
        raise ValueError(f"{printable(index_dir)}: index.faiss holds {index.d}-d vectors but model.safetensors embeds "
                         f"in {model.embedding_dim} dimensions; export again")
    # records of early versions hold no digest
    if "model" in info and hashlib.sha1(snapshot).hexdigest() != info["model"]:
        raise ValueError(f"{printable(model_file)} is not the model that embedded this export (export.json records "
                         "another): queries would be embedded by another model than the index; export again")
    embeddings, positions, errors = embed_shard(model, items, size, device, batch_size, workers=0, progress=progress)
    if len(positions) == 0:
        unread = [reason for _, reason in errors] + unusable
        more = f"; and {len(unread) - SHOWN_UNREAD} more" if len(unread) > SHOWN_UNREAD else ""
        raise ValueError(f"cannot read any query ({len(unread)} unusable file(s) or folder(s)): "
                         f"{'; '.join(unread[:SHOWN_UNREAD])}{more}")
    wanted = min(k, index.ntotal)
    if hasattr(index, "hnsw"):  # a graph search keeping fewer candidates than it returns finds too few, and worse
        index.hnsw.efSearch = max(index.hnsw.efSearch, wanted)
    squared, found = index.search(np.ascontiguousarray(embeddings), wanted)
    results = []
    for row, position in enumerate(positions.tolist()):
        for rank, (value, hit) in enumerate(zip(squared[row].tolist(), found[row].tolist()), start=1):
            if hit >= 0:
                entry = manifest[hit]
                results.append(Neighbour(printable(items[position].relative), rank, entry["path"], entry["label"],
                                         float(np.sqrt(max(value, 0.0)))))
    if output is not None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["query", "rank", "path", "label", "distance"])
        writer.writerows([n.query, n.rank, n.path, n.label, f"{n.distance:.6f}"] for n in results)
        write_text_atomic(output, buffer.getvalue())
    return SearchResult(results, [reason for _, reason in errors] + unusable, index.ntotal, warnings)
