"""A finished export run again after images were added, changed or removed embeds only those: the other rows come
from the finished export (same model file, same image size), and the result is the export a fresh run gives."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import apps.retrieval.export as export_module
from apps.retrieval.export import STAMPS, export_folder
from apps.retrieval.search import search_export
from tests.apps.retrieval_files import tiny_image
from tests.apps.retrieval_runs import tiny_set
from tests.apps.test_retrieval_export import manifest
from tests.apps.test_retrieval_user_outputs import _model


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tiny_set(tmp_path_factory.mktemp("collection") / "images", per_class=3)
    (root / "splits.json").unlink()
    (root / "class3" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root


@pytest.fixture
def collection(source, tmp_path):
    return shutil.copytree(source, tmp_path / "images")  # copy2: modification times kept


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _model(tmp_path_factory.mktemp("model") / "best.safetensors", seed=0)


class Embedded:
    """Stands in for export's ``embed_shard``: records the images it is given."""

    def __init__(self) -> None:
        self.images: list[str] = []
        self.real = export_module.embed_shard

    def __call__(self, model, items, *args, **kwargs):
        self.images.extend(item.relative for item in items)
        return self.real(model, items, *args, **kwargs)


def edit(collection) -> None:
    """One image added, one removed, one replaced by another picture."""
    tiny_image(collection / "class2" / "new.jpg", seed=99)
    (collection / "class5" / "img001.jpg").unlink()
    changed = collection / "class0" / "img002.jpg"
    stat = os.stat(changed)
    tiny_image(changed, seed=98)
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def assert_same_export(a, b) -> None:
    assert manifest(a) == manifest(b)
    np.testing.assert_allclose(np.load(a / "embeddings.npy"), np.load(b / "embeddings.npy"), rtol=1e-5, atol=1e-6)
    assert np.array_equal(np.load(a / STAMPS), np.load(b / STAMPS))


def test_only_new_and_changed_images_are_embedded_again(collection, checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "export"
    first = export_folder(checkpoint, collection, out, shard_size=4)
    assert first.images == 24 and first.images_reused == 0 and np.load(out / STAMPS).shape == (24, 6)
    edit(collection)
    embedded = Embedded()
    monkeypatch.setattr(export_module, "embed_shard", embedded)
    again = export_folder(checkpoint, collection, out, shard_size=4)
    # the unreadable file is tried again: it may have been repaired
    assert sorted(embedded.images) == ["class0/img002.jpg", "class2/new.jpg", "class3/broken.jpg"]
    assert again.images == 24 and again.images_reused == 22 and again.skipped == first.skipped
    fresh = tmp_path / "fresh"
    export_folder(checkpoint, collection, fresh, shard_size=5)
    assert_same_export(out, fresh)
    assert search_export(out, [collection / "class2" / "new.jpg"], k=1).neighbours[0].path == "class2/new.jpg"


@pytest.mark.parametrize("change", ["image size", "model"])
def test_nothing_is_reused_from_an_export_at_another_size_or_by_another_model(collection, checkpoint, tmp_path,
                                                                               monkeypatch, change):
    out = tmp_path / "export"
    export_folder(checkpoint, collection, out)
    edit(collection)
    other = _model(tmp_path / "other.safetensors", seed=1) if change == "model" else checkpoint
    embedded = Embedded()
    monkeypatch.setattr(export_module, "embed_shard", embedded)
    report = export_folder(other, collection, out, image_size=48 if change == "image size" else None, overwrite=True)
    assert report.images_reused == 0 and len(embedded.images) == 25
    fresh = tmp_path / "fresh"
    export_folder(other, collection, fresh, image_size=48 if change == "image size" else None)
    assert_same_export(out, fresh)


@pytest.mark.parametrize("damage", ["missing", "not numpy", "other length"])
def test_an_export_without_usable_stamps_is_embedded_again_whole(collection, checkpoint, tmp_path, monkeypatch,
                                                                  damage):
    out = tmp_path / "export"
    export_folder(checkpoint, collection, out)
    stamps = out / STAMPS
    if damage == "missing":  # as exports written before stamps.npy existed
        stamps.unlink()
        assert export_folder(checkpoint, collection, out).up_to_date  # nothing changed: still a finished export
    elif damage == "not numpy":
        stamps.write_text("not an array")
    else:
        np.save(stamps, np.load(stamps)[:-1])
    edit(collection)
    embedded = Embedded()
    monkeypatch.setattr(export_module, "embed_shard", embedded)
    assert export_folder(checkpoint, collection, out).images_reused == 0 and len(embedded.images) == 25
    fresh = tmp_path / "fresh"
    export_folder(checkpoint, collection, fresh)
    assert_same_export(out, fresh)


def test_search_refuses_to_write_its_table_over_the_stamps(collection, checkpoint, tmp_path):
    out = tmp_path / "export"
    export_folder(checkpoint, collection, out)
    with pytest.raises(ValueError, match="is a file of the export"):
        search_export(out, [collection / "class0" / "img000.jpg"], output=out / STAMPS)


def test_the_command_says_how_many_images_it_did_not_embed_again(collection, checkpoint, tmp_path):
    from tests.apps.test_retrieval_cli import invoke

    args = ("export", "--checkpoint", checkpoint, "--input", collection, "--output", tmp_path / "export", "--quiet")
    assert "not embedded again" not in invoke(*args).output
    edit(collection)
    r = invoke(*args)
    assert r.exit_code == 0 and "exported 24 image(s) × 8 dimensions (22 image(s) unchanged since the last export, " \
                                "not embedded again)" in r.output, r.output
