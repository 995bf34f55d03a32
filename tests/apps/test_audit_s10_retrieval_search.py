"""apps.retrieval.search against a brute-force numpy reference over the exported embeddings (ties by manifest row, k
larger than the collection, queries in the collection, a query named twice, a query folder); an export whose index
searches another metric, or an --output that is a folder, refused before any query is embedded; an empty manifest
named."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

import apps.retrieval.search as search_module
from apps.retrieval.export import INDEX_DIGEST, export_folder
from apps.retrieval.model import create_retrieval_model
from apps.retrieval.search import search_export
from tests.apps.retrieval_files import tiny_image
from tests.apps.retrieval_runs import BACKBONE


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """(image folder, its export): 3 classes × 2 images, ``c/copy.png`` a byte copy of ``a/0.png`` (a tie)."""
    top = tmp_path_factory.mktemp("search")
    images = top / "images"
    for n, name in enumerate("abc"):
        for i in range(2):
            tiny_image(images / name / f"{i}.png", seed=10 * n + i)
    shutil.copyfile(images / "a" / "0.png", images / "c" / "copy.png")
    checkpoint = top / "model.safetensors"
    torch.manual_seed(0)
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(checkpoint, metadata={"image_size": "32"})
    export_folder(checkpoint, images, top / "export")
    return images, top / "export"


def test_search_equals_a_brute_force_reference(exported, tmp_path):
    images, out = exported
    embeddings = np.load(out / "embeddings.npy").astype(np.float64)
    with open(out / "manifest.csv", newline="") as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    query = images / "a" / "0.png"
    result = search_export(out, [query, images / "c", query, images / "a" / ".." / "a" / "0.png"], k=50,
                           output=tmp_path / "hits.csv")
    assert result.exported == len(paths) == 7 and result.skipped == []
    by_query: dict[str, list] = {}
    for n in result.neighbours:
        by_query.setdefault(n.query, []).append(n)
    assert list(by_query) == [str(query), str(images / "c" / "0.png"), str(images / "c" / "1.png"),
                              str(images / "c" / "copy.png")]  # each file once, k cut to the 7 exported
    for name, found in by_query.items():
        own = paths.index(Path(name).relative_to(images).as_posix())
        distances = np.linalg.norm(embeddings - embeddings[own], axis=1)
        order = np.lexsort((np.arange(len(paths)), distances))  # ties (the copy) by manifest row
        assert [n.rank for n in found] == list(range(1, 8))
        assert [n.path for n in found] == [paths[i] for i in order]
        assert [n.distance for n in found] == pytest.approx(distances[order].tolist(), abs=1e-5)
        assert [n.label for n in found] == [paths[i].split("/")[0] for i in order]
    assert [n.path for n in by_query[str(query)][:2]] == ["a/0.png", "c/copy.png"]
    with open(tmp_path / "hits.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["query"], int(r["rank"]), r["path"], r["label"], float(r["distance"])) for r in rows] == [
        (n.query, n.rank, n.path, n.label, pytest.approx(n.distance, abs=1e-6)) for n in result.neighbours]


def test_an_index_of_another_metric_is_refused(exported, tmp_path):
    images, out = exported
    copy = tmp_path / "export"
    shutil.copytree(out, copy)
    inner = faiss.IndexFlatIP(8)
    inner.add(np.load(copy / "embeddings.npy"))
    (copy / "index.faiss").write_bytes(faiss.serialize_index(inner).tobytes())
    record = json.loads((copy / "export.json").read_text())  # as if an export had written it (else refused first)
    record[INDEX_DIGEST] = hashlib.sha1((copy / "index.faiss").read_bytes()).hexdigest()
    (copy / "export.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"index\.faiss: an index of another metric .* export again"):
        search_export(copy, [images / "a" / "0.png"])


def test_an_output_that_is_a_folder_is_refused_before_the_queries_are_embedded(exported, tmp_path, monkeypatch):
    images, out = exported

    def not_reached(*args, **kwargs):
        raise AssertionError("queries embedded before --output was checked")

    monkeypatch.setattr(search_module, "embed_shard", not_reached)
    with pytest.raises(ValueError, match=f"--output {tmp_path} is a folder: give the path of the CSV file"):
        search_export(out, [images / "a" / "0.png"], output=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_manifest_is_named(exported, tmp_path):
    images, out = exported
    copy = tmp_path / "export"
    shutil.copytree(out, copy)
    (copy / "manifest.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"manifest\.csv: not the manifest of an export \(no column path, label\)"):
        search_export(copy, [images / "a" / "0.png"])
