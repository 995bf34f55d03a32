"""apps.retrieval export and search with wrong and awkward arguments: a ``batch_size`` that is no positive integer
is refused naming it before the model is loaded (it failed with torch's DataLoader message, naming no argument),
numpy integers for ``k``, ``batch_size`` and ``shard_size`` are taken (faiss and the DataLoader refused them after
the work), an empty query list and an index folder that is a file or not there are named before the model is
loaded, an export into a file is named (it was an OSError "File exists" of the lock), a manifest row cut short has an
empty label (it was None); and an export in shards searched by enough queries for faiss's matrix-product path agrees
with a brute-force numpy search over its embeddings."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import apps.retrieval.search as search_module
from apps.retrieval.export import export_folder
from apps.retrieval.model import create_retrieval_model
from apps.retrieval.search import search_export
from tests.apps.retrieval_files import tiny_image
from tests.apps.retrieval_runs import BACKBONE

CLASSES, PER_CLASS = 4, 6  # 24 images: faiss searches 20 or more queries with matrix products


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(image folder, its export in shards of 5, the model file): 4 classes × 6 images and one unreadable file."""
    top = tmp_path_factory.mktemp("s15_search")
    images = top / "images"
    for c in range(CLASSES):
        for i in range(PER_CLASS):
            tiny_image(images / f"c{c}" / f"{i}.png", seed=10 * c + i)
    (images / "c1" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    checkpoint = top / "model.safetensors"
    torch.manual_seed(0)
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(checkpoint, metadata={"image_size": "32"})
    export_folder(checkpoint, images, top / "export", shard_size=5)
    return images, top / "export", checkpoint


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Search fails the test if it loads the export's model."""

    def not_reached(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(search_module, "load_snapshot", not_reached)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_search_names_a_batch_size_that_is_no_positive_integer(exported, no_model, batch_size) -> None:
    images, out, _ = exported
    with pytest.raises(ValueError, match=f"^batch_size must be an integer >= 1, got {batch_size!r}$"):
        search_export(out, [images / "c0" / "0.png"], k=2, batch_size=batch_size)


def test_search_names_an_empty_query_list_before_loading_the_model(exported, no_model) -> None:
    _, out, _ = exported
    with pytest.raises(ValueError, match="^no query image given"):
        search_export(out, [])


@pytest.mark.parametrize("where, message", [("file", "a file, not a folder"), ("missing", "no such folder")])
def test_search_names_an_index_folder_that_is_a_file_or_not_there(exported, no_model, tmp_path: Path, where: str,
                                                                   message: str) -> None:
    images, _, _ = exported
    index = tmp_path / "index"
    if where == "file":
        index.write_text("not a folder")
    with pytest.raises(ValueError, match=f"index: no finished export here \\({message}\\)"):
        search_export(index, [images / "c0" / "0.png"])


def test_search_takes_numpy_integers(exported) -> None:
    images, out, _ = exported
    result = search_export(out, [images / "c0" / "0.png", images / "c2"], k=np.int64(3), batch_size=np.int32(2))
    assert [n.rank for n in result.neighbours] == [1, 2, 3] * (1 + PER_CLASS)
    assert result.neighbours[0].path == "c0/0.png" and result.neighbours[0].distance < 1e-5


def test_export_takes_numpy_integers_and_names_a_wrong_size(exported, tmp_path: Path) -> None:
    images, out, checkpoint = exported
    report = export_folder(checkpoint, images, tmp_path / "again", batch_size=np.int64(4), shard_size=np.int64(7),
                           workers=np.int64(0))
    assert report.images == CLASSES * PER_CLASS and report.shards == 4
    np.testing.assert_allclose(np.load(tmp_path / "again" / "embeddings.npy"), np.load(out / "embeddings.npy"),
                               rtol=0, atol=1e-6)
    for name, value in (("batch_size", 2.5), ("shard_size", 0), ("shard_size", 1.5)):
        with pytest.raises(ValueError, match=f"^{name} must be an integer >= 1, got {value!r}$"):
            export_folder(checkpoint, images, tmp_path / name, **{name: value})
        assert not (tmp_path / name).exists()


def test_a_sharded_export_searched_by_many_queries_equals_brute_force(exported, tmp_path: Path) -> None:
    images, out, _ = exported
    embeddings = np.load(out / "embeddings.npy").astype(np.float64)
    with open(out / "manifest.csv", newline="") as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    assert len(paths) == CLASSES * PER_CLASS
    result = search_export(out, [images], k=len(paths), output=tmp_path / "hits.csv")  # k = the index's size
    assert result.skipped and "broken.jpg" in result.skipped[0] and len(result.skipped) == 1
    queries = list(dict.fromkeys(n.query for n in result.neighbours))
    assert queries == [str(images / path) for path in paths]
    for query in queries:
        own = paths.index(Path(query).relative_to(images).as_posix())
        distances = np.linalg.norm(embeddings - embeddings[own], axis=1)
        order = np.lexsort((np.arange(len(paths)), distances))
        found = [n for n in result.neighbours if n.query == query]
        assert [n.rank for n in found] == list(range(1, len(paths) + 1))
        assert [n.path for n in found] == [paths[i] for i in order]
        assert [n.distance for n in found] == pytest.approx(distances[order].tolist(), abs=1e-5)
    with open(tmp_path / "hits.csv", newline="") as f:
        assert sum(1 for _ in csv.DictReader(f)) == len(paths) ** 2


def test_export_names_an_output_that_is_a_file(exported, tmp_path: Path) -> None:
    images, _, checkpoint = exported
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(ValueError, match=r"notes\.txt: a file, not a folder to export into"):
        export_folder(checkpoint, images, target)
    assert target.read_text() == "mine"


def test_a_manifest_row_cut_short_has_an_empty_label(exported, tmp_path: Path) -> None:
    images, out, _ = exported
    edited = tmp_path / "export"
    shutil.copytree(out, edited)
    lines = (out / "manifest.csv").read_text().splitlines()
    lines[1] = lines[1].split(",")[0]  # c0/0.png, its label left out by hand
    (edited / "manifest.csv").write_text("\n".join(lines) + "\n")
    result = search_export(edited, [images / "c0" / "0.png"], k=2, output=tmp_path / "hits.csv")
    assert [(n.path, n.label) for n in result.neighbours][0] == ("c0/0.png", "")
    assert all(isinstance(n.label, str) for n in result.neighbours)
