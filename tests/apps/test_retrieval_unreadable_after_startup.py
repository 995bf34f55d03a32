"""`retrieval evaluate`, `retrieval export` and the head stage's features with an image that becomes unreadable
after start-up (on-disk cache mode: its cache file and its source removed): the command goes on without it,
names it once, counts it and lists it with the skipped files; scores and written files cover the readable images."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import apps.retrieval.evaluate
import apps.retrieval.export
import apps.retrieval.train
import coseg.data.cache
from apps.cli import main
from apps.retrieval.features import readable_features
from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.datasets import load_retrieval_split
from apps.retrieval.model import create_retrieval_model
from apps.retrieval.train import train
from coseg.data import ImageCache
from metric.retrieval.faiss_backend import import_faiss
from tests.apps.retrieval_files import write_class_folders
from tests.apps.retrieval_runs import BACKBONE, tiny_config, tiny_set
from tests.apps.test_retrieval_unreadable_during_training import remove_cache_and


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "best.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8, flip_average=True).save(
        path, metadata={"image_size": "32"})
    return path


@pytest.fixture
def on_disk(monkeypatch):
    monkeypatch.setattr(coseg.data.cache, "MEMORY_SHARE", 0.0)


def evaluate(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["retrieval", "evaluate", "--split", "all", "--quiet", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def test_evaluate_scores_the_readable_images_and_lists_the_lost_one(checkpoint, tmp_path, on_disk, monkeypatch):
    data = write_class_folders(tmp_path / "data", ["a", "b", "c"], per_class=3)
    victim = data / "b" / "img001.jpg"
    embed_split = apps.retrieval.evaluate.embed_split

    def after_decoding(*args, **kwargs):
        remove_cache_and(tmp_path / "cache", victim)
        return embed_split(*args, **kwargs)

    monkeypatch.setattr(apps.retrieval.evaluate, "embed_split", after_decoding)
    code, output = evaluate("--checkpoint", checkpoint, "--data", data, "--output", tmp_path / "eval",
                            "--cache-dir", tmp_path / "cache", "--report")
    assert code == 0, output
    assert output.count(str(victim)) == 1 and "skipped 1 unreadable file(s):" in output
    assert "1 image(s) decoded at start-up could no longer be read and were left out" in output
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["images"] == 8 and summary["queries"] == 8 and summary["unreadable"] == 1
    assert [s.split(": ")[0] for s in summary["skipped"]] == [str(victim)]
    with open(tmp_path / "eval" / "neighbours.csv", newline="") as f:
        assert "b/img001.jpg" not in f.read()

    # the same scores as on a copy of the data set without that image
    monkeypatch.undo()
    shutil.copytree(data, tmp_path / "without")
    assert evaluate("--checkpoint", checkpoint, "--data", tmp_path / "without", "--output", tmp_path / "eval2")[0] == 0
    again = json.loads((tmp_path / "eval2" / "summary.json").read_text())
    for name in ("R@1", "R@2", "MAP@R", "NMI", "images", "queries"):
        assert again[name] == pytest.approx(summary[name], abs=1e-3), name


def test_stored_features_with_a_lost_image_are_read_back_aligned(tmp_path, on_disk):
    data = write_class_folders(tmp_path / "data", ["a", "b"], per_class=3)
    dataset = RetrievalImageDataset(load_retrieval_split(data, "all").records, 32,
                                    ImageCache(32, cache_dir=tmp_path / "cache", progress=False))
    model = create_retrieval_model(BACKBONE, weights=None, embedding_dim=8)
    remove_cache_and(tmp_path / "cache", dataset.records[1].path)
    first = readable_features(model, dataset, 2, torch.device("cpu"), cache_dir=tmp_path / "features")
    assert first.kept.tolist() == [0, 2, 3, 4, 5] and first.values.shape[:2] == (2, 5)
    assert [i for i, _ in first.unreadable] == [1] and str(dataset.records[1].path) in first.unreadable[0][1]
    model.features = lambda x: pytest.fail("the backbone ran again")
    again = readable_features(model, dataset, 2, torch.device("cpu"), cache_dir=tmp_path / "features")
    assert torch.equal(again.values, first.values) and torch.equal(again.kept, first.kept)


def test_export_skips_an_image_gone_after_the_scan(checkpoint, tmp_path, monkeypatch):
    data = write_class_folders(tmp_path / "images", ["a", "b"], per_class=3)
    victim = data / "a" / "img002.jpg"
    scan_images = apps.retrieval.export.scan_images

    def then_removed(folder):
        found = scan_images(folder)
        victim.unlink()
        return found

    monkeypatch.setattr(apps.retrieval.export, "scan_images", then_removed)
    result = CliRunner().invoke(main, ["retrieval", "export", "--checkpoint", str(checkpoint), "--input", str(data),
                                       "--output", str(tmp_path / "out"), "--quiet", "--shard-size", "2"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "exported 5 image(s)" in result.output and "  a/img002.jpg: " in result.output
    out = tmp_path / "out"
    with open(out / "manifest.csv", newline="") as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    assert paths == ["a/img000.jpg", "a/img001.jpg", "b/img000.jpg", "b/img001.jpg", "b/img002.jpg"]
    assert np.load(out / "embeddings.npy").shape == (5, 8)
    assert import_faiss().read_index(str(out / "index.faiss")).ntotal == 5
    with open(out / "skipped.csv", newline="") as f:
        assert [row["path"] for row in csv.DictReader(f)] == ["a/img002.jpg"]
    record = json.loads((out / "export.json").read_text())
    assert record["images"] == 5 and [path for path, _ in record["skipped"]] == ["a/img002.jpg"]
    assert not (out / ".shards").exists()


def test_the_head_stage_goes_on_and_reports_images_lost_before_its_features(tmp_path, on_disk, monkeypatch, capsys):
    cfg = tiny_config(tiny_set(tmp_path / "data"), tmp_path / "run", epochs=1, cache_dir=str(tmp_path / "cache"))
    lost = []
    load_training_data = apps.retrieval.train.load_training_data

    def then_lost(*args, **kwargs):
        data = load_training_data(*args, **kwargs)
        lost.extend([data.train.records[0].path, data.val.records[0].path])
        remove_cache_and(tmp_path / "cache", *lost)
        return data

    monkeypatch.setattr(apps.retrieval.train, "load_training_data", then_lost)
    result = train(cfg)
    assert result.stages["head"].epochs_run == 1 and [f for f, _ in result.skipped] == lost
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        assert all(row["val_MAP@R"] for row in csv.DictReader(f))
    err = capsys.readouterr().err
    assert all(err.count(f"warning: {path}: ") == 1 for path in lost)
    assert "the features of another image of its class take its place" in err
    assert "it is left out of the head stage's validation score" in err
