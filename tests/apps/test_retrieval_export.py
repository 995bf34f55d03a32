"""apps.retrieval.export and search: files and their agreement, unreadable images and broken links listed, resume
after an interruption (same result, finished shards not redone), changed images re-embedded, a half-replaced or
inconsistent export refused, search finds the query and skips unreadable queries."""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

import apps.retrieval.export as export_module
from apps.retrieval.export import export_folder
from apps.retrieval.model import create_retrieval_model, load_retrieval_model
from apps.retrieval.search import search_export
from coseg.data import read_image, resize_image
from tests.apps.retrieval_files import tiny_image
from tests.apps.retrieval_runs import BACKBONE, tiny_set
from tests.helpers import assert_close


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """8 class folders × 3 images, one image directly in the root, one unreadable file."""
    root = tiny_set(tmp_path_factory.mktemp("collection") / "images", per_class=3)
    (root / "splits.json").unlink()
    tiny_image(root / "loose.png", seed=7)
    (root / "class3" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "best.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(path, metadata={"image_size": "32"})
    return path


def manifest(folder) -> list[dict]:
    with open(folder / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


class CountingEmbed:
    """Stands in for export's ``embed_shard``: counts calls and raises KeyboardInterrupt at call ``fail_at``."""

    def __init__(self, fail_at: int = 0) -> None:
        self.calls, self.fail_at, self.real = 0, fail_at, export_module.embed_shard

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


def test_export_files_agree_with_the_model(collection, checkpoint, tmp_path):
    out = tmp_path / "export"
    report = export_folder(checkpoint, collection, out, shard_size=7)
    embeddings = np.load(out / "embeddings.npy")
    rows = manifest(out)
    assert embeddings.dtype == np.float32 and embeddings.shape == (25, 8) == (report.images, report.dim)
    paths = [r["path"] for r in rows]
    assert paths == sorted(paths) and "class3/broken.jpg" not in paths
    assert {r["path"]: r["label"] for r in rows}["loose.png"] == "" and rows[0] == {"path": "class0/img000.jpg",
                                                                                    "label": "class0"}
    assert [path for path, _ in report.skipped] == ["class3/broken.jpg"]
    assert faiss.read_index(str(out / "index.faiss")).ntotal == 25 and not (out / export_module.SHARD_DIR).exists()
    model = load_retrieval_model(checkpoint).eval()
    image = torch.from_numpy(resize_image(read_image(collection / rows[5]["path"]), 32)).permute(2, 0, 1)
    with torch.no_grad():
        assert_close(torch.from_numpy(embeddings[5]), model(image[None].float() / 255)[0], rtol=1e-4, atol=1e-5)


def test_interrupted_export_resumes_without_redoing_finished_shards(collection, checkpoint, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    export_folder(checkpoint, collection, whole, shard_size=4)  # 26 files: 7 shards
    interrupted = tmp_path / "interrupted"
    monkeypatch.setattr(export_module, "embed_shard", CountingEmbed(fail_at=4))
    with pytest.raises(KeyboardInterrupt):
        export_folder(checkpoint, collection, interrupted, shard_size=4)
    assert len(list((interrupted / export_module.SHARD_DIR).glob("*.npz"))) == 3
    assert not (interrupted / "embeddings.npy").exists() and not (interrupted / "export.json").exists()
    counting = CountingEmbed()
    monkeypatch.setattr(export_module, "embed_shard", counting)
    report = export_folder(checkpoint, collection, interrupted, shard_size=4)
    assert counting.calls == 4 and report.shards == 7 and report.shards_reused == 3
    assert np.array_equal(np.load(interrupted / "embeddings.npy"), np.load(whole / "embeddings.npy"))
    assert manifest(interrupted) == manifest(whole)
    again = export_folder(checkpoint, collection, interrupted, shard_size=4)
    assert again.up_to_date and counting.calls == 4 and again.skipped == report.skipped


def test_a_changed_image_is_embedded_again(collection, checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "export"
    export_folder(checkpoint, collection, out, shard_size=100)
    counting = CountingEmbed()
    monkeypatch.setattr(export_module, "embed_shard", counting)
    changed = collection / "class0" / "img001.jpg"
    stat = os.stat(changed)
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not export_folder(checkpoint, collection, out, shard_size=100).up_to_date and counting.calls == 1


def test_export_never_writes_into_its_input(collection, checkpoint):
    with pytest.raises(ValueError, match="inside the input folder"):
        export_folder(checkpoint, collection, collection / "export")


def test_search_finds_the_query_itself_first(collection, checkpoint, tmp_path):
    out = tmp_path / "export"
    export_folder(checkpoint, collection, out)
    query = collection / "class5" / "img002.jpg"
    results = search_export(out, [query], k=4, output=tmp_path / "hits.csv").neighbours
    assert [n.rank for n in results] == [1, 2, 3, 4]
    assert results[0].path == "class5/img002.jpg" and results[0].label == "class5" and results[0].distance < 1e-3
    assert all(a.distance <= b.distance for a, b in zip(results, results[1:]))
    with open(tmp_path / "hits.csv", newline="") as f:
        saved = list(csv.DictReader(f))
    assert [r["path"] for r in saved] == [n.path for n in results] and saved[0]["rank"] == "1"
    several = search_export(out, [collection / "class1"], k=2).neighbours
    assert len(several) == 6 and all(n.path == n.query.split(str(collection) + "/")[1] for n in several[::2])
    with pytest.raises(ValueError, match=r"cannot read any query \(1 unusable file\(s\) or folder\(s\)\): "
                                         r".*broken\.jpg: "):
        search_export(out, [collection / "class3" / "broken.jpg"])
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    for n in range(7):
        (unreadable / f"q{n}.jpg").write_bytes(b"not an image")
    (unreadable / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(ValueError, match=r"cannot read any query \(8 unusable file\(s\) or folder\(s\)\): "
                                         r".*q0\.jpg: .*q4\.jpg: [^;]*; and 3 more$"):
        search_export(out, [unreadable])
    with pytest.raises(ValueError, match="no finished export"):
        search_export(tmp_path, [query])


def test_unreadable_images_in_a_query_folder_are_skipped_and_listed(collection, checkpoint, tmp_path):
    out = tmp_path / "export"
    export_folder(checkpoint, collection, out)
    result = search_export(out, [collection / "class3"], k=30)
    assert sorted({n.query for n in result.neighbours}) == [str(collection / "class3" / f"img00{i}.jpg")
                                                            for i in range(3)]
    assert len(result.neighbours) == 3 * 25  # k above the 25 exported images: every image, once per query
    assert len(result.skipped) == 1 and result.skipped[0].startswith(str(collection / "class3" / "broken.jpg"))


def test_a_half_replaced_export_is_no_finished_export(collection, checkpoint, tmp_path, monkeypatch):
    """An export killed while it replaces the files of an earlier export (here of a 16-d model) leaves a folder
    that search refuses; the rerun finishes it."""
    out, wider = tmp_path / "export", tmp_path / "wide.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=16).save(wider, metadata={"image_size": "32"})
    export_folder(wider, collection, out, index="hnsw")
    real = export_module.write_bytes_atomic

    def killed_at_the_model_copy(path, data):
        if Path(path).name == "model.safetensors":
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(export_module, "write_bytes_atomic", killed_at_the_model_copy)
    with pytest.raises(KeyboardInterrupt):
        export_folder(checkpoint, collection, out, overwrite=True)
    query = collection / "class5" / "img002.jpg"
    with pytest.raises(ValueError, match="no finished export"):
        search_export(out, [query])
    monkeypatch.setattr(export_module, "write_bytes_atomic", real)
    assert export_folder(checkpoint, collection, out).shards_reused == 1
    assert search_export(out, [query], k=1).neighbours[0].path == "class5/img002.jpg"


def test_export_and_search_in_a_folder_whose_name_is_not_utf8(collection, checkpoint, tmp_path):
    out = tmp_path / os.fsdecode(b"export \xff")  # faiss takes no such path: the index goes through bytes
    try:
        out.mkdir()
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system holds no file names that are not UTF-8")
    export_folder(checkpoint, collection, out)
    query = collection / "class5" / "img002.jpg"
    assert search_export(out, [query], k=1).neighbours[0].path == "class5/img002.jpg"
    assert faiss.deserialize_index(np.fromfile(out / "index.faiss", np.uint8)).ntotal == 25


def test_search_refuses_an_inconsistent_export(collection, checkpoint, tmp_path):
    out, wider = tmp_path / "export", tmp_path / "wide.safetensors"
    export_folder(checkpoint, collection, out)
    query = collection / "class5" / "img002.jpg"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=16).save(wider, metadata={"image_size": "32"})
    shutil.copyfile(wider, out / "model.safetensors")
    with pytest.raises(ValueError, match="holds 8-d vectors but model.safetensors embeds in 16 dimensions"):
        search_export(out, [query])
    (out / "index.faiss").unlink()
    with pytest.raises(ValueError, match=r"incomplete export \(index.faiss missing\)"):
        search_export(out, [query])


def test_broken_links_are_listed_by_export_and_search(checkpoint, tmp_path):
    folder = tmp_path / "photos"
    tiny_image(folder / "cats" / "a.jpg", seed=1)
    tiny_image(folder / "dogs" / "b.jpg", seed=2)
    (folder / "cats" / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    report = export_folder(checkpoint, folder, tmp_path / "export")
    assert report.images == 2 and report.skipped == [("cats/gone.jpg", "broken link")]
    with open(tmp_path / "export" / "skipped.csv", newline="") as f:
        assert list(csv.reader(f)) == [["path", "reason"], ["cats/gone.jpg", "broken link"]]
    result = search_export(tmp_path / "export", [folder], k=1)
    assert len(result.neighbours) == 2 and result.skipped == [f"{folder / 'cats' / 'gone.jpg'}: broken link"]


def test_an_export_of_another_folder_or_model_is_kept_unless_overwritten(collection, checkpoint, tmp_path):
    out, wider, other = tmp_path / "export", tmp_path / "wide.safetensors", tmp_path / "other"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=16).save(wider, metadata={"image_size": "32"})
    tiny_image(other / "a.jpg", seed=3)
    export_folder(checkpoint, collection, out, shard_size=7)
    kept = {name: (out / name).read_bytes() for name in export_module.FILES}
    with pytest.raises(ValueError, match="holds an export of another folder, .*collection.*: --overwrite replaces it"):
        export_folder(checkpoint, other, out)
    with pytest.raises(ValueError, match=r"holds an export of the folder by another model \(then in .*best"):
        export_folder(wider, collection, out)
    assert {name: (out / name).read_bytes() for name in export_module.FILES} == kept
    assert not export_folder(checkpoint, collection, out, index="hnsw").up_to_date  # the same folder and model
    assert export_folder(wider, other, out, overwrite=True).images == 1
    assert search_export(out, [other / "a.jpg"]).neighbours[0].path == "a.jpg"


def test_a_damaged_export_record_is_named(collection, checkpoint, tmp_path):
    out = tmp_path / "export"
    export_folder(checkpoint, collection, out)
    (out / "export.json").write_text("[1, 2")
    message = "export.json: not the record of a `coseg retrieval export`"
    with pytest.raises(ValueError, match=message):
        export_folder(checkpoint, collection, out)
    with pytest.raises(ValueError, match=message):
        search_export(out, [collection / "class5" / "img002.jpg"])


def test_export_of_a_folder_and_by_a_model_whose_names_are_not_utf8(checkpoint, tmp_path):
    folder, model = tmp_path / os.fsdecode(b"photos \xff"), tmp_path / os.fsdecode(b"model \xfe.safetensors")
    try:
        tiny_image(folder / "a.jpg", seed=1)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system holds no file names that are not UTF-8")
    shutil.copyfile(checkpoint, model)
    out = tmp_path / "export"
    assert export_folder(model, folder, out).images == 1
    record = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert record["input"].endswith("photos \\xff") and record["checkpoint"].endswith("model \\xfe.safetensors")
    assert export_folder(model, folder, out).up_to_date


def test_skipped_lists_only_what_was_left_out_with_its_reason(checkpoint, tmp_path):
    """A co-segmentation set (``images/``, ``masks/``): an image without a mask and images sharing a stem are
    exported (export reads no masks), an unreadable image is listed once, with its problem only; the image and the
    folder beside ``images/`` are listed as what they are."""
    folder = tmp_path / "set"
    for name, seed in (("x.jpg", 1), ("y.jpg", 2), ("y.png", 3), ("w.jpg", 4)):
        tiny_image(folder / "images" / "cats" / name, seed=seed)
    tiny_image(folder / "masks" / "cats" / "x.png", seed=5)
    tiny_image(folder / "masks" / "cats" / "gone.png", seed=6)
    (folder / "images" / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    tiny_image(folder / "loose.jpg", seed=7)
    tiny_image(folder / "vacation" / "z.jpg", seed=8)
    out = tmp_path / "export"
    report = export_folder(checkpoint, folder, out)
    assert [(r["path"], r["label"]) for r in manifest(out)] == [(f"images/cats/{name}", "cats")
                                                                for name in ("w.jpg", "x.jpg", "y.jpg", "y.png")]
    assert [path for path, _ in report.skipped] == ["images/cats/broken.jpg", "loose.jpg", "vacation"]
    reasons = dict(report.skipped)
    assert reasons["images/cats/broken.jpg"].startswith("not a decodable image")
    assert reasons["loose.jpg"].startswith("outside any group") and reasons["vacation"].startswith("skipped folder")
    with open(out / "skipped.csv", newline="") as f:
        assert [tuple(row) for row in csv.reader(f)][1:] == report.skipped


def test_images_beside_a_class_folder_named_like_their_folder_are_exported(checkpoint, tmp_path):
    folder = tmp_path / "photos"
    tiny_image(folder / "a.jpg", seed=1)
    tiny_image(folder / "photos" / "b.jpg", seed=2)
    report = export_folder(checkpoint, folder, tmp_path / "export")
    assert report.skipped == [] and manifest(tmp_path / "export") == [{"path": "a.jpg", "label": ""},
                                                                      {"path": "photos/b.jpg", "label": "photos"}]


def test_a_second_export_into_a_folder_being_written_is_refused(collection, checkpoint, tmp_path, monkeypatch):
    """Another export started while one runs (here from inside its first shard) would mix its files with the
    first's and delete its temporary files: it is refused; once the first ends, exports run again."""
    out, wider = tmp_path / "export", tmp_path / "wide.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=16).save(wider, metadata={"image_size": "32"})
    real, tried = export_module.embed_shard, []

    def meanwhile_another_export(*args, **kwargs):
        if not tried:
            tried.append(True)
            with pytest.raises(ValueError, match="another `coseg retrieval export` is writing there"):
                export_folder(wider, collection, out, overwrite=True)
        return real(*args, **kwargs)

    monkeypatch.setattr(export_module, "embed_shard", meanwhile_another_export)
    assert export_folder(checkpoint, collection, out, shard_size=7).dim == 8 and tried
    monkeypatch.setattr(export_module, "embed_shard", real)
    assert export_folder(wider, collection, out, overwrite=True).dim == 16


def test_search_refuses_an_export_replaced_while_it_reads_it(collection, checkpoint, tmp_path, monkeypatch):
    """An export by another model of the same size finishing between search's reading of the model and of the
    index would have the query embedded by one model and searched among the other's embeddings."""
    import apps.retrieval.search as search_module

    out, other = tmp_path / "export", tmp_path / "other.safetensors"
    export_folder(checkpoint, collection, out)
    torch.manual_seed(5)
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(other, metadata={"image_size": "32"})
    real = search_module.load_snapshot

    def replaced_meanwhile(*args, **kwargs):
        loaded = real(*args, **kwargs)
        export_folder(other, collection, out, overwrite=True)
        return loaded

    monkeypatch.setattr(search_module, "load_snapshot", replaced_meanwhile)
    with pytest.raises(ValueError, match="the export was replaced while search read it"):
        search_export(out, [collection / "class5" / "img002.jpg"], k=1)


def test_search_takes_each_query_image_once_and_needs_one(collection, checkpoint, tmp_path):
    out = tmp_path / "export"
    export_folder(checkpoint, collection, out)
    query = collection / "class5" / "img002.jpg"
    again = collection / "class5" / ".." / "class5" / "img002.jpg"
    result = search_export(out, [query, collection / "class5", again], k=2)
    assert [(n.query, n.rank) for n in result.neighbours] == [(str(q), rank) for q in (
        query, collection / "class5" / "img000.jpg", collection / "class5" / "img001.jpg") for rank in (1, 2)]
    with pytest.raises(ValueError, match="no query image given"):
        search_export(out, [])


def test_files_no_export_wrote_are_kept_unless_overwritten(collection, checkpoint, tmp_path):
    out = tmp_path / "work"
    out.mkdir()
    (out / "manifest.csv").write_text("my own list\n")
    with pytest.raises(ValueError, match=r"work holds manifest.csv, not written by an export: --overwrite replaces"):
        export_folder(checkpoint, collection, out)
    assert (out / "manifest.csv").read_text() == "my own list\n"
    assert export_folder(checkpoint, collection, out, overwrite=True).images == 25 and len(manifest(out)) == 25


@pytest.mark.parametrize("existing", [False, True])
def test_an_export_with_no_readable_image_leaves_no_shards_and_no_folder_it_made(checkpoint, tmp_path, existing):
    folder = tmp_path / "photos"
    (folder / "cats").mkdir(parents=True)
    (folder / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "export"
    if existing:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"no readable image under .*photos; first problem: cats/broken\.jpg"):
        export_folder(checkpoint, folder, out)
    if existing:  # a folder the user made stays, with what it held and nothing else (the lock file goes too)
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    else:
        assert not out.exists()


def test_search_says_when_the_export_holds_fewer_images_than_k(collection, checkpoint, tmp_path):
    # was: the lists ended early without a word
    from click.testing import CliRunner

    from apps.cli import main

    out = tmp_path / "export"
    export_folder(checkpoint, collection, out)
    held = len(manifest(out))
    query = collection / "class5" / "img002.jpg"
    ask = ["retrieval", "search", "--index", str(out), "--query", str(query), "--quiet", "--k"]
    many = CliRunner().invoke(main, ask + [str(held + 5)])
    assert many.exit_code == 0, many.output
    assert f"note: the export holds {held} image(s), fewer than --k {held + 5}: each query's list ends there" in \
        many.output
    assert [line.split()[0] for line in many.output.splitlines() if line.split()[0].isdigit()] == [
        str(rank) for rank in range(1, held + 1)]
    few = CliRunner().invoke(main, ask + ["2"])
    assert few.exit_code == 0 and "note:" not in few.output
