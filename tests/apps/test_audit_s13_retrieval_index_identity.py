"""An export's index.faiss and the paths of its manifest.csv are tied to its export.json by their SHA-1: search
refuses either copied from another export of the same size and dimension (the index's rows would name the wrong
images), naming both files, but takes a manifest whose labels were edited; an export written before the digests
existed is searched with a warning, and exporting it again records them."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from apps.cli import main
from apps.retrieval.export import INDEX_DIGEST, MANIFEST_DIGEST, export_folder
from apps.retrieval.model import create_retrieval_model
from apps.retrieval.search import search_export
from tests.apps.retrieval_files import tiny_image
from tests.apps.retrieval_runs import BACKBONE


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(images of export A, export A, export B): two folders of 3 images each, exported by one model."""
    top = tmp_path_factory.mktemp("identity")
    checkpoint = top / "model.safetensors"
    torch.manual_seed(0)
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(checkpoint, metadata={"image_size": "32"})
    for name, seed in (("a", 0), ("b", 50)):
        for i in range(3):
            tiny_image(top / f"images_{name}" / f"{name}{i}.png", seed=seed + i)
        export_folder(checkpoint, top / f"images_{name}", top / f"export_{name}")
    return top / "images_a", top / "export_a", top / "export_b"


@pytest.mark.parametrize("name", ["index.faiss", "manifest.csv"])
def test_a_file_copied_from_another_export_is_refused_naming_both_files(exports, tmp_path, name):
    images, export_a, export_b = exports
    mixed = tmp_path / "mixed"
    shutil.copytree(export_a, mixed)
    shutil.copyfile(export_b / name, mixed / name)
    message = (f"{re.escape(str(mixed / name))} is not the {name} {re.escape(str(mixed / 'export.json'))} was "
               "written with .*copied from another export.*export again")
    with pytest.raises(ValueError, match=message):
        search_export(mixed, [images / "a0.png"], k=1)
    found = search_export(export_a, [images / "a0.png"], k=1)
    assert found.neighbours[0].path == "a0.png" and found.warnings == []


def test_a_manifest_with_edited_labels_is_searched(exports, tmp_path):
    images, export_a, _ = exports
    edited = tmp_path / "edited"
    shutil.copytree(export_a, edited)
    text = (edited / "manifest.csv").read_text()
    (edited / "manifest.csv").write_text(text.replace("a0.png,", "a0.png,my label"))
    nearest = search_export(edited, [images / "a0.png"], k=1).neighbours[0]
    assert (nearest.path, nearest.label) == ("a0.png", "my label")


def test_an_export_of_an_earlier_version_is_searched_with_a_warning_and_exported_again(exports, tmp_path):
    images, export_a, _ = exports
    old = tmp_path / "old"
    shutil.copytree(export_a, old)
    record = json.loads((old / "export.json").read_text())
    digests = {key: record.pop(key) for key in (INDEX_DIGEST, MANIFEST_DIGEST)}
    (old / "export.json").write_text(json.dumps(record))
    found = search_export(old, [images / "a0.png"], k=1)
    assert found.neighbours[0].path == "a0.png"
    (warning,) = found.warnings
    assert "records no digest of index.faiss and manifest.csv" in warning and "run the export again" in warning
    r = CliRunner().invoke(main, ["retrieval", "search", "--index", str(old), "--query", str(images / "a0.png"),
                                  "--k", "1", "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0 and "warning: " in r.output and "records no digest" in r.output
    report = export_folder(_model(export_a), images, old)
    assert not report.up_to_date and report.images_reused == 3
    assert {key: json.loads((old / "export.json").read_text())[key] for key in digests} == digests
    assert search_export(old, [images / "a0.png"], k=1).warnings == []


def _model(export: Path) -> Path:
    """The model file the export was made with (export.json records it)."""
    return Path(json.loads((export / "export.json").read_text())["checkpoint"])
