"""What a user's retrieval runs leave on disk: an evaluation's report files always belong to the summary.json beside
them, search never writes its table over the export or a query, a damaged export record is named, and an export
with a bad batch size is refused before it creates anything."""
from __future__ import annotations

import json

import pytest
import torch

import apps.retrieval.evaluate as evaluate_module
from apps.retrieval.evaluate import evaluate_checkpoint
from apps.retrieval.export import export_folder
from apps.retrieval.model import create_retrieval_model
from apps.retrieval.search import search_export
from tests.apps.retrieval_files import write_class_folders
from tests.apps.retrieval_runs import BACKBONE


def _model(path, seed: int):
    torch.manual_seed(seed)
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(path, metadata={"image_size": "32"})
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return _model(folder / "one.safetensors", 0), _model(folder / "two.safetensors", 1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_class_folders(tmp_path_factory.mktemp("data") / "classes", ["a", "b", "c"], per_class=3)


@pytest.fixture(scope="module")
def export(models, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "index"
    export_folder(models[0], data, out)
    return out


def test_evaluation_without_report_removes_the_earlier_report_files(models, data, tmp_path):
    output = tmp_path / "eval"
    evaluate_checkpoint(models[0], data, output, split="all", report_queries=10)
    assert (output / "neighbours.csv").is_file() and (output / "recall_at_k.csv").is_file()
    evaluate_checkpoint(models[1], data, output, split="all")
    assert json.loads((output / "summary.json").read_text())["checkpoint"] == str(models[1])
    assert not (output / "neighbours.csv").exists() and not (output / "recall_at_k.csv").exists()


def test_evaluation_without_report_removes_the_earlier_report_page(models, data, tmp_path):
    from coseg.report.build import build_report

    output = tmp_path / "eval"
    evaluate_checkpoint(models[0], data, output, split="all", report_queries=10)
    build_report(output, thumbnail=16, progress=False)  # what `retrieval evaluate --report` writes after
    evaluate_checkpoint(models[1], data, output, split="all")
    assert not (output / "report.html").exists() and not (output / "report_files").exists()


def test_interrupted_report_leaves_no_summary_of_another_evaluation(models, data, tmp_path, monkeypatch):
    output = tmp_path / "eval"
    evaluate_checkpoint(models[0], data, output, split="all", report_queries=10)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "write_report_files", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_checkpoint(models[1], data, output, split="all", report_queries=10)
    assert not (output / "summary.json").exists()  # the neighbours.csv left there is model one's


@pytest.mark.parametrize("target", ["manifest.csv", "query"])
def test_search_refuses_to_write_its_table_over_the_export_or_a_query(export, data, target):
    query = data / "a" / "img000.jpg"
    output = export / "manifest.csv" if target == "manifest.csv" else query
    before = output.read_bytes()
    with pytest.raises(ValueError, match="--output .* (is a file of the export|is a query image)"):
        search_export(export, [query], k=2, output=output)
    assert output.read_bytes() == before
    assert search_export(export, [query], k=1).neighbours[0].path == "a/img000.jpg"


@pytest.mark.parametrize("size", ["missing", "96", 0])
def test_search_names_a_damaged_record_image_size(export, data, tmp_path, size):
    damaged = tmp_path / "index"
    damaged.mkdir()
    for f in export.iterdir():
        if f.is_file():
            (damaged / f.name).write_bytes(f.read_bytes())
    record = json.loads((damaged / "export.json").read_text())
    if size == "missing":
        del record["image_size"]
    else:
        record["image_size"] = size
    (damaged / "export.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"export\.json: image_size .* is no image size in pixels"):
        search_export(damaged, [data / "a" / "img000.jpg"], k=1)


def test_export_refuses_a_batch_size_below_one_before_writing(models, data, tmp_path):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        export_folder(models[0], data, tmp_path / "index", batch_size=0)
    assert not (tmp_path / "index").exists()


def test_an_export_records_its_model_file_wherever_it_was_run_from(models, data, tmp_path, monkeypatch):
    """The export's record holds the model file's absolute path (it held the path as typed, so the refusal of another
    model named ``one.safetensors`` to a user who ran from elsewhere)."""
    out = tmp_path / "index"
    monkeypatch.chdir(models[0].parent)
    export_folder("one.safetensors", data, out)
    record = json.loads((out / "export.json").read_text())
    assert record["checkpoint"] == str(models[0]) and record["checkpoint_relative"].endswith("one.safetensors")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=f"by another model \\(then in {models[0]}\\)"):
        export_folder(models[1], data, out)
