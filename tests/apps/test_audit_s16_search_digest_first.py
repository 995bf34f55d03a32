"""search checks ``index.faiss`` against the SHA-1 export.json records before faiss reads it: a file export.json does
not vouch for (damaged, or put there by hand) never reaches faiss, whose reader allocates what the file's header
claims. Was: faiss read it first, then the digest was compared. An export of an earlier version (no digests) still
has faiss's own check, named."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import metric.retrieval.faiss_backend as faiss_backend
from apps.retrieval.export import INDEX_DIGEST, MANIFEST_DIGEST
from apps.retrieval.search import search_export
from tests.apps.test_audit_retrieval_inference import collection, export  # noqa: F401 - module fixtures


class Unread(Exception):
    """Raised by the stand-in faiss reader: faiss was asked to read the file."""


@pytest.fixture
def cut(export: Path, tmp_path: Path) -> Path:  # noqa: F811 - the fixture imported above
    """A copy of ``export`` whose index.faiss is cut in half."""
    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    whole = (export / "index.faiss").read_bytes()
    (folder / "index.faiss").write_bytes(whole[:len(whole) // 2])
    return folder


def test_an_index_export_json_does_not_vouch_for_never_reaches_faiss(collection, cut, monkeypatch):  # noqa: F811
    faiss = faiss_backend.import_faiss()

    def refuse(*args, **kwargs):
        raise Unread

    monkeypatch.setattr(faiss, "deserialize_index", refuse)
    with pytest.raises(ValueError, match=r"index\.faiss is not the index\.faiss .* was written with \(its index_sha1 "
                                         r"differs: damaged, or copied from another export\?\)"):
        search_export(cut, [collection / "class4" / "img001.jpg"], k=1)


def test_a_cut_index_of_an_export_without_digests_gets_faiss_s_check_named(collection, cut):  # noqa: F811
    record = json.loads((cut / "export.json").read_text())
    for key in (INDEX_DIGEST, MANIFEST_DIGEST):
        del record[key]
    (cut / "export.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"index\.faiss: not a faiss index, or a damaged one; export again"):
        search_export(cut, [collection / "class4" / "img001.jpg"], k=1)
