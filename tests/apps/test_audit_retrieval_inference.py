"""Retrieval export, search and evaluate as a user meets them: a model file a training replaces while it is exported,
an export folder whose ``export.json`` no export wrote, temporary files and shards left around an export, a model
file swapped into an export, and a report asked into the data folder it scores."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

import apps.retrieval.export as export_module
from apps.retrieval.evaluate import evaluate_checkpoint
from apps.retrieval.export import export_folder
from apps.retrieval.model import create_retrieval_model
from apps.retrieval.search import search_export
from coseg.atomic import TEMPORARY_MARK
from tests.apps.retrieval_runs import BACKBONE, tiny_set


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """8 class folders × 2 images (no splits file)."""
    root = tiny_set(tmp_path_factory.mktemp("collection") / "photos", per_class=2)
    (root / "splits.json").unlink()
    return root


def save_model(path, seed: int) -> bytes:
    """A random 8-d model of the test backbone (weights drawn with ``seed``) saved at ``path``; its file's bytes."""
    torch.manual_seed(seed)
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(path, metadata={"image_size": "32"})
    return path.read_bytes()


def test_a_model_file_replaced_during_the_export_is_not_the_one_copied(collection, tmp_path, monkeypatch):
    """A training saving a better ``best.safetensors`` while it is exported: the export's model copy is the model
    that embedded the images (was: the new file, so search embedded queries with another model than the index's)."""
    checkpoint, out = tmp_path / "best.safetensors", tmp_path / "export"
    exported = save_model(checkpoint, seed=1)
    real = export_module.embed_shard

    def training_saves_meanwhile(*args, **kwargs):
        save_model(checkpoint, seed=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(export_module, "embed_shard", training_saves_meanwhile)
    export_folder(checkpoint, collection, out)
    assert (out / "model.safetensors").read_bytes() == exported
    nearest = search_export(out, [collection / "class4" / "img001.jpg"], k=1).neighbours[0]
    assert nearest.path == "class4/img001.jpg" and nearest.distance < 1e-5


def test_a_model_file_replaced_while_export_loads_it_is_refused(collection, tmp_path, monkeypatch):
    checkpoint = tmp_path / "best.safetensors"
    save_model(checkpoint, seed=1)
    real = export_module.load_for_retrieval

    def replaced_meanwhile(*args, **kwargs):
        loaded = real(*args, **kwargs)
        save_model(checkpoint, seed=2)
        return loaded

    monkeypatch.setattr(export_module, "load_for_retrieval", replaced_meanwhile)
    with pytest.raises(ValueError, match=r"best\.safetensors was replaced while export loaded it"):
        export_folder(checkpoint, collection, tmp_path / "export")
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("text", ["[1, 2", '{"notes": "mine"}'])
def test_an_export_json_no_export_wrote_is_named_and_replaced_with_overwrite(collection, tmp_path, text):
    """Was: a damaged record was refused even with --overwrite, and a JSON object without the export's entries was
    told as 'an export of another folder, None'."""
    checkpoint, out = tmp_path / "best.safetensors", tmp_path / "export"
    save_model(checkpoint, seed=1)
    out.mkdir()
    (out / "export.json").write_text(text)
    with pytest.raises(ValueError, match=r"export\.json: not the record of a `coseg retrieval export` .*: "
                                         r"--overwrite replaces it, or choose another --output"):
        export_folder(checkpoint, collection, out)
    assert (out / "export.json").read_text() == text
    assert export_folder(checkpoint, collection, out, overwrite=True).images == 16
    assert json.loads((out / "export.json").read_text())["images"] == 16
    assert export_folder(checkpoint, collection, out).up_to_date


def test_a_report_into_the_data_folder_is_refused_before_it_is_scanned_as_a_class(collection, tmp_path):
    """The report's thumbnails in DATA/eval/report_files became a class of the next evaluation of DATA, with its
    scores; ``coseg evaluate`` refuses such a --report, and so does ``coseg retrieval evaluate`` now."""
    from click.testing import CliRunner

    from apps.cli import main

    data = tmp_path / "data"
    shutil.copytree(collection, data)
    checkpoint = tmp_path / "best.safetensors"
    save_model(checkpoint, seed=1)
    ask = ["retrieval", "evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "all",
           "--layout", "folders", "--quiet", "--report", "--output"]
    refused = CliRunner().invoke(main, ask + [str(data / "eval")])
    assert refused.exit_code == 2 and "which is inside the data folder" in refused.output, refused.output
    assert not (data / "eval").exists()
    with pytest.raises(ValueError, match="inside the data folder"):
        evaluate_checkpoint(checkpoint, data, data / "class0", layout="folders", split="all", report_queries=4)
    done = CliRunner().invoke(main, ask + [str(tmp_path / "eval")])
    assert done.exit_code == 0, done.output
    inside = evaluate_checkpoint(checkpoint, data, data / "eval", layout="folders", split="all")  # no report: kept
    assert inside.summary["images"] == 16 and (data / "eval" / "summary.json").is_file()


def test_an_export_removes_its_own_temporary_files_only(collection, tmp_path):
    """An export into a folder that holds a training's run folder (here writing ``last.pt``) removes the temporary
    files a killed export left, not the training's (was: every temporary file anywhere below its output folder)."""
    checkpoint, out = tmp_path / "best.safetensors", tmp_path / "runs"
    save_model(checkpoint, seed=1)
    training = out / "ret" / f".last.pt{TEMPORARY_MARK}a1b2.pt"
    killed = out / f".embeddings.npy{TEMPORARY_MARK}c3d4.npy"
    for path in (training, killed):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half written")
    export_folder(checkpoint, collection, out)
    assert training.is_file() and not killed.exists()


def test_shards_left_by_an_export_killed_as_it_finished_go_with_the_next_run(collection, tmp_path):
    """A kill between the finished export's record and the removal of ``.shards/`` (a large folder takes a while)
    left the shards there for good: every later run found the export up to date and returned at once."""
    checkpoint, out = tmp_path / "best.safetensors", tmp_path / "export"
    save_model(checkpoint, seed=1)
    export_folder(checkpoint, collection, out, shard_size=4)
    left = out / export_module.SHARD_DIR / "000000-0123456789abcdef0123.npz"
    left.parent.mkdir()
    left.write_bytes(b"a finished shard")
    assert export_folder(checkpoint, collection, out, shard_size=4).up_to_date
    assert not left.parent.exists()


def test_search_refuses_a_model_file_put_in_the_export_in_place_of_its_own(collection, tmp_path):
    """A retrained model of the same size copied over the export's ``model.safetensors`` (to search with it) embedded
    the queries by another model than the index's, and search answered without a word."""
    checkpoint, retrained, out = tmp_path / "best.safetensors", tmp_path / "retrained.safetensors", tmp_path / "export"
    save_model(checkpoint, seed=1)
    export_folder(checkpoint, collection, out)
    query = collection / "class4" / "img001.jpg"
    assert search_export(out, [query], k=1).neighbours[0].distance < 1e-5
    save_model(retrained, seed=2)
    shutil.copyfile(retrained, out / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.safetensors is not the model that embedded this export"):
        search_export(out, [query], k=1)


@pytest.fixture(scope="module")
def export(collection, tmp_path_factory):
    """An export of ``collection`` by a random model."""
    folder = tmp_path_factory.mktemp("made")
    save_model(folder / "best.safetensors", seed=1)
    export_folder(folder / "best.safetensors", collection, folder / "export")
    return folder / "export"


def test_a_manifest_saved_by_a_spreadsheet_is_read(collection, export, tmp_path):
    """A byte-order mark and CRLF line ends, as a spreadsheet saves a CSV (was: ``Error: path``)."""
    edited = tmp_path / "export"
    shutil.copytree(export, edited)
    text = (export / "manifest.csv").read_text(encoding="utf-8")
    (edited / "manifest.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    nearest = search_export(edited, [collection / "class4" / "img001.jpg"], k=1).neighbours[0]
    assert (nearest.path, nearest.label) == ("class4/img001.jpg", "class4")


@pytest.mark.parametrize("name, content, message", [
    ("index.faiss", None, r"index\.faiss is not the index\.faiss .*export\.json was written with \(its index_sha1 "
                          r"differs: damaged, or copied from another export\?\)"),
    ("manifest.csv", "path,label\nclass0/\xe9t\xe9.jpg,class0\n".encode("latin-1"),
     r"manifest\.csv: not the manifest of an export \('utf-8' codec can't decode"),
    ("manifest.csv", b"file,class\n" + b"a.jpg,a\n" * 16, r"manifest\.csv: not the manifest of an export \(no column "
                                                          r"path, label\)"),
], ids=["cut index", "latin-1 manifest", "other columns"])
def test_a_damaged_index_or_manifest_is_named(collection, export, tmp_path, name, content, message):
    """Was: faiss's traceback for a cut index, ``Error: path`` or a bare codec error for a manifest."""
    damaged = tmp_path / "export"
    shutil.copytree(export, damaged)
    whole = (export / name).read_bytes()
    (damaged / name).write_bytes(whole[:len(whole) // 2] if content is None else content)
    with pytest.raises(ValueError, match=message):
        search_export(damaged, [collection / "class4" / "img001.jpg"], k=1)
