"""apps.retrieval.evaluate: single-image classes are references, never queries (scores, report curve and report
queries alike; an error when no class has two images), and the problems of an official layout's index files are
reported, not dropped."""
from __future__ import annotations

import csv
import json
import os

import pytest
import torch
from click.testing import CliRunner

from apps.cli import main
from apps.retrieval.evaluate import evaluate_checkpoint, load_for_retrieval
from apps.retrieval.model import create_retrieval_model
from tests.apps.retrieval_files import tiny_image, write_class_folders, write_cub
from tests.apps.retrieval_runs import BACKBONE


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "best.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(path, metadata={"image_size": "32"})
    return path


def test_single_image_classes_are_references_only(checkpoint, tmp_path):
    data = write_class_folders(tmp_path / "data", ["a", "b", "c"], per_class=3)
    tiny_image(data / "only one" / "x.jpg", seed=9)
    output = tmp_path / "eval"
    summary = evaluate_checkpoint(checkpoint, data, output, split="all", report_queries=10).summary
    assert summary["images"] == 10 and summary["queries"] == 9 and summary["classes"] == 4
    with open(output / "recall_at_k.csv", newline="") as f:
        curve = {int(r["k"]): float(r["recall"]) for r in csv.DictReader(f)}
    assert all(abs(curve[k] - summary[f"R@{k}"]) < 1e-3 for k in (1, 2, 4, 8))
    with open(output / "neighbours.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len({r["query"] for r in rows}) == 9 and "only one" not in {r["query_class"] for r in rows}
    assert "only one" in {r["class"] for r in rows}  # still a neighbour of the others


def test_no_class_with_two_images_is_a_clear_error(checkpoint, tmp_path):
    data = write_class_folders(tmp_path / "data", ["a", "b", "c"], per_class=1)
    with pytest.raises(ValueError, match="no class of split 'all' .* has two readable images"):
        evaluate_checkpoint(checkpoint, data, tmp_path / "eval", split="all")
    assert not (tmp_path / "eval").exists()


def test_a_single_readable_class_is_a_clear_error(checkpoint, tmp_path):
    # every score over one class is 100 whatever the model: refused, not reported as a perfect model
    data = write_class_folders(tmp_path / "data", ["a", "b"], per_class=3)
    for image in (data / "b").iterdir():
        image.write_bytes(b"not an image")
    result = CliRunner().invoke(main, ["retrieval", "evaluate", "--checkpoint", str(checkpoint), "--data", str(data),
                                       "--output", str(tmp_path / "eval"), "--split", "all", "--quiet"])
    assert result.exit_code == 1, result.output
    assert "Error: only the class 'a' of split 'all'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "eval").exists()


def test_index_file_problems_are_reported(checkpoint, tmp_path):
    root = write_cub(tmp_path, [1, 101, 102], per_class=3)
    missing = root / "images" / "101.Bird_101" / "Bird_101_0000.jpg"
    missing.unlink()
    with open(root / "images.txt", "a") as f:
        f.write("garbage\n")
    output = tmp_path / "eval"
    result = CliRunner().invoke(main, ["retrieval", "evaluate", "--checkpoint", str(checkpoint), "--data",
                                       str(tmp_path), "--output", str(output), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((output / "summary.json").read_text())
    assert summary["images"] == 5 and len(summary["problems"]) == 2
    # was: "entries of the data set's index files", said also of class folders, which have none
    assert "skipped 2 data set entries:" in result.output
    assert f"missing image: {missing}" in result.output and "line 10: 'garbage'" in result.output


def test_report_of_a_class_folder_whose_name_is_not_utf8(checkpoint, tmp_path):
    odd = os.fsdecode(b"caf\xe9")
    data = write_class_folders(tmp_path / "data", ["a", odd], per_class=3)
    output = tmp_path / "eval"
    evaluate_checkpoint(checkpoint, data, output, split="all", report_queries=6)
    with open(output / "neighbours.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["query_class"] for r in rows} == {"a", "caf\\xe9"}


@pytest.mark.parametrize("size", ["abc", "0", "3.5"])
def test_a_wrong_recorded_image_size_is_named_with_the_file(tmp_path, size):
    path = tmp_path / "bad.safetensors"
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(path, metadata={"image_size": size})
    with pytest.raises(ValueError, match=f"bad.safetensors: its metadata 'image_size' must be a positive integer, "
                                         f"got '{size}'"):  # was: int()'s "invalid literal", the file unnamed
        load_for_retrieval(path, torch.device("cpu"))


def test_report_rebuilt_from_another_folder_finds_the_images(checkpoint, tmp_path, monkeypatch):
    # evaluated with a relative --data, the report (`coseg report OUTPUT`) is rebuilt from another working folder
    from coseg.report.build import build_report
    from tests.report.report_runs import parse_page

    write_class_folders(tmp_path / "data", ["a", "b"], per_class=3)
    monkeypatch.chdir(tmp_path)
    evaluate_checkpoint(checkpoint, "data", "eval", split="all", report_queries=2)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = build_report(tmp_path / "eval", thumbnail=16, progress=False)
    text = result.path.read_text(encoding="utf-8")
    assert not result.problems and "cannot read file" not in text
    assert len(parse_page(result.path).images) == 1 + 2 * (1 + 5)  # the R@K curve, 2 queries with 5 neighbours


def test_split_help_is_true_of_class_folders_without_a_splits_file(checkpoint, tmp_path):
    # the help said "folders: a key of splits.json", yet 'all' and --train-classes need no such file
    help_text = " ".join(CliRunner().invoke(main, ["retrieval", "evaluate", "-h"]).output.split())
    assert "test, train, all (every class) or, for class folders, any key of DATA/splits.json" in help_text
    assert "with --train-classes, test is the other class folders" in help_text
    data = write_class_folders(tmp_path / "data", ["a", "b", "c"], per_class=2)
    assert evaluate_checkpoint(checkpoint, data, split="all").summary["classes"] == 3
    assert evaluate_checkpoint(checkpoint, data, train_classes=["a"]).summary["classes"] == 2


def test_the_summary_records_the_data_folder_as_it_does_the_model_file(checkpoint, tmp_path, monkeypatch):
    # was: "data" as typed (relative to wherever the command ran) beside an absolute "checkpoint"
    write_class_folders(tmp_path / "data", ["a", "b"], per_class=3)
    monkeypatch.chdir(tmp_path)
    evaluate_checkpoint(checkpoint, "data", tmp_path / "eval", split="all")
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["data"] == str(tmp_path / "data") and summary["data_relative"] == "../data"
    assert summary["checkpoint"] == str(checkpoint)
