"""apps.retrieval.search on an HNSW export asked for as many neighbours as it holds (or more than its graph search
keeps candidates, 16): every exported image is listed, nearest first (the search kept 16 candidates and returned
lists cut short without a word, and its neighbours beyond the 16th were not the nearest)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import faiss
import numpy as np
import torch

from apps.retrieval.export import INDEX_DIGEST, MANIFEST_DIGEST, build_index, export_folder, manifest_digest
from apps.retrieval.model import create_retrieval_model
from apps.retrieval.search import search_export
from tests.apps.retrieval_files import tiny_image
from tests.apps.retrieval_runs import BACKBONE

ROWS = 400


def test_an_hnsw_export_lists_every_image_when_k_reaches_its_size(tmp_path: Path) -> None:
    images = tmp_path / "images"
    for i in range(3):
        tiny_image(images / f"{i}.png", seed=i)
    checkpoint = tmp_path / "model.safetensors"
    torch.manual_seed(0)
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(checkpoint, metadata={"image_size": "32"})
    out = tmp_path / "export"
    export_folder(checkpoint, images, out, index="hnsw")
    # an export of ROWS images, as far as search reads it: their index and manifest
    vectors = np.random.default_rng(0).standard_normal((ROWS, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.serialize_index(build_index(vectors, "hnsw")).tobytes()
    (out / "index.faiss").write_bytes(index)
    (out / "manifest.csv").write_text("path,label\n" + "".join(f"{i}.png,\n" for i in range(ROWS)))
    record = json.loads((out / "export.json").read_text())  # search refuses files export.json does not record
    record.update({INDEX_DIGEST: hashlib.sha1(index).hexdigest(),
                   MANIFEST_DIGEST: manifest_digest(f"{i}.png" for i in range(ROWS))})
    (out / "export.json").write_text(json.dumps(record))
    query = images / "0.png"
    for k in (ROWS, ROWS + 5):
        found = search_export(out, [query], k=k).neighbours
        assert sorted(n.path for n in found) == sorted(f"{i}.png" for i in range(ROWS))
        assert [n.rank for n in found] == list(range(1, ROWS + 1))
        distances = [n.distance for n in found]
        assert distances == sorted(distances)
    exact = search_export(out, [query], k=ROWS).neighbours
    nearest = search_export(out, [query], k=60).neighbours
    assert [n.path for n in nearest] == [n.path for n in exact[:60]]
