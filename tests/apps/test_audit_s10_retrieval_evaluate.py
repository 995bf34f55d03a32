"""apps.retrieval.evaluate against naive references: the summary's R@K and MAP@R equal loops over the embeddings it
computed (which equal the model's forward at any batch size), the report's curve and neighbours agree with them, a
single-image class is a reference only, an unreadable image is named; an output that is a file is refused before any
image is read."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import apps.retrieval.evaluate as evaluate_module
from apps.retrieval.datasets import load_retrieval_split
from apps.retrieval.evaluate import embed_split, evaluate_checkpoint, load_for_retrieval
from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.model import create_retrieval_model
from metric.retrieval import retrieval_metrics
from tests.apps.retrieval_files import tiny_image, write_class_folders
from tests.apps.retrieval_runs import BACKBONE


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "best.safetensors"
    torch.manual_seed(0)
    create_retrieval_model(BACKBONE, weights=None, embedding_dim=8).save(path, metadata={"image_size": "32"})
    return path


def naive_scores(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """R@1/2/4/8 and MAP@R in percent by loops; queries: images whose class has another image; ties by index."""
    n = len(labels)
    hits, precisions = {k: [] for k in (1, 2, 4, 8)}, []
    for q in range(n):
        relevant = int((labels == labels[q]).sum()) - 1
        if relevant == 0:
            continue
        others = sorted((float(np.linalg.norm(embeddings[q] - embeddings[j])), j) for j in range(n) if j != q)
        same = [labels[j] == labels[q] for _, j in others]
        for k in hits:
            hits[k].append(any(same[:k]))
        found, total = 0, 0.0
        for rank, correct in enumerate(same[:relevant], start=1):
            found += correct
            total += correct * found / rank
        precisions.append(total / relevant)
    return {**{f"R@{k}": 100.0 * np.mean(v) for k, v in hits.items()}, "MAP@R": 100.0 * np.mean(precisions)}


def test_scores_and_report_equal_naive_references(checkpoint, tmp_path):
    data = write_class_folders(tmp_path / "data", ["a", "b", "c"], per_class=4)
    tiny_image(data / "lone" / "x.png", seed=99)
    (data / "b" / "broken.jpg").write_bytes(b"not an image")
    output = tmp_path / "eval"
    summary = evaluate_checkpoint(checkpoint, data, output, split="all", report_queries=100).summary
    assert json.loads((output / "summary.json").read_text()) == summary
    assert summary["images"] == 13 and summary["queries"] == 12 and summary["classes"] == 4
    assert len(summary["skipped"]) == 1 and "broken.jpg" in summary["skipped"][0]

    model, size = load_for_retrieval(checkpoint, torch.device("cpu"))
    dataset = RetrievalImageDataset(load_retrieval_split(data, "all").records, size)
    embeddings, kept, unreadable = embed_split(model, dataset, torch.device("cpu"), batch_size=32)
    assert kept.tolist() == list(range(13)) and unreadable == []
    one_by_one = embed_split(model, dataset, torch.device("cpu"), batch_size=1)[0]
    with torch.no_grad():
        forward = model(torch.stack([dataset[i]["image"] for i in range(len(dataset))]).float() / 255)
    assert torch.allclose(embeddings, one_by_one, atol=1e-6) and torch.allclose(embeddings, forward, atol=1e-6)

    labels = dataset.labels.numpy()
    naive = naive_scores(embeddings.double().numpy(), labels)
    library = {k: 100.0 * v for k, v in retrieval_metrics(embeddings, dataset.labels).items()}
    for name, value in naive.items():
        assert summary[name] == pytest.approx(value, abs=1e-6) == library[name]
    assert summary["NMI"] == pytest.approx(library["NMI"], abs=1e-6)

    with open(output / "recall_at_k.csv", newline="") as f:
        curve = {int(r["k"]): float(r["recall"]) for r in csv.DictReader(f)}
    assert sorted(curve) == list(range(1, 13))  # up to N − 1 = 12
    assert all(curve[k] == pytest.approx(summary[f"R@{k}"], abs=1e-3) for k in (1, 2, 4, 8))
    with open(output / "neighbours.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    paths = [str(r.path) for r in dataset.records]
    assert len({r["query"] for r in rows}) == 12 and "lone" not in {r["query_class"] for r in rows}
    for row in rows:
        q, hit = paths.index(row["query"]), paths.index(row["path"])
        distances = np.linalg.norm(embeddings.double().numpy() - embeddings[q].double().numpy(), axis=1)
        distances[q] = np.inf
        assert np.lexsort((np.arange(13), distances))[int(row["rank"]) - 1] == hit
        assert float(row["distance"]) == pytest.approx(distances[hit], abs=1e-5)
        assert row["correct"] == str(int(labels[q] == labels[hit]))


def test_an_output_that_is_a_file_is_refused_before_any_image_is_read(checkpoint, tmp_path, monkeypatch):
    data = write_class_folders(tmp_path / "data", ["a", "b"], per_class=2)
    output = tmp_path / "summary.json"
    output.write_text("{}")

    def not_reached(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(evaluate_module, "load_for_retrieval", not_reached)
    with pytest.raises(ValueError, match=f"{output}: a file, not a folder for summary.json"):
        evaluate_checkpoint(checkpoint, data, output, split="all")
    assert output.read_text() == "{}"
