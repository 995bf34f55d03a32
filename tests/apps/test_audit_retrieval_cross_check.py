"""A CUB-200-2011 copy end to end (train → evaluate → export → search), checked against naive computations on the
exported embeddings: the class-disjoint split of the official ranges, R@K and MAP@R with the query left out, and
search ranks and distances by brute force."""
from __future__ import annotations

import csv
import os

import numpy as np

from apps.retrieval.evaluate import evaluate_checkpoint
from apps.retrieval.export import export_folder
from apps.retrieval.search import search_export
from apps.retrieval.train import train
from tests.apps.retrieval_files import write_cub
from tests.apps.retrieval_runs import tiny_config

TRAIN_IDS, TEST_IDS = (1, 2, 99, 100), (101, 102, 150, 200)


def naive_scores(x: np.ndarray, labels: list[str]) -> dict[str, float]:
    """R@1/2/4/8 and MAP@R in percent, one query at a time, each query against all the other images."""
    hits = {k: [] for k in (1, 2, 4, 8)}
    precisions = []
    for i in range(len(labels)):
        others = sorted((float(np.linalg.norm(x[i] - x[j])), j) for j in range(len(labels)) if j != i)
        same = [labels[j] == labels[i] for _, j in others]
        relevant = sum(same)
        for k in hits:
            hits[k].append(any(same[:k]))
        precisions.append(sum(sum(same[:r + 1]) / (r + 1) for r in range(relevant) if same[r]) / relevant)
    return {**{f"R@{k}": 100 * float(np.mean(v)) for k, v in hits.items()}, "MAP@R": 100 * float(np.mean(precisions))}


def test_cub_scores_and_search_match_naive_computations_on_the_export(tmp_path):
    root = write_cub(tmp_path / "data", [*TRAIN_IDS, *TEST_IDS], per_class=3)
    run = tmp_path / "run"
    result = train(tiny_config(root, run, epochs=1, val_fraction=0.0))
    assert result.train_classes == [f"{i:03d}.Bird_{i}" for i in TRAIN_IDS]  # classes 1–100 only

    evaluation = evaluate_checkpoint(run / "best.safetensors", root, tmp_path / "eval")
    summary = evaluation.summary
    assert (summary["split"], summary["classes"], summary["images"]) == ("test", 4, 12)

    collection = tmp_path / "collection"  # the test images as class folders, for the export's labels
    for path in sorted((root / "images").glob("*/*.jpg")):
        if int(path.parent.name[:3]) in TEST_IDS:
            (collection / path.parent.name).mkdir(parents=True, exist_ok=True)
            os.symlink(path, collection / path.parent.name / path.name)
    export = tmp_path / "export"
    export_folder(run / "best.safetensors", collection, export, image_size=32)
    x = np.load(export / "embeddings.npy").astype(np.float64)
    with open(export / "manifest.csv", newline="", encoding="utf-8") as f:
        manifest = list(csv.DictReader(f))
    assert len(manifest) == 12 and {row["label"] for row in manifest} == {f"{i:03d}.Bird_{i}" for i in TEST_IDS}
    for name, value in naive_scores(x, [row["label"] for row in manifest]).items():
        assert abs(summary[name] - value) < 1e-4, (name, summary[name], value)

    query_folder = collection / f"{TEST_IDS[0]:03d}.Bird_{TEST_IDS[0]}"
    found = search_export(export, [query_folder], k=5)
    assert len(found.neighbours) == 3 * 5
    row_of = {row["path"]: i for i, row in enumerate(manifest)}
    for query in {n.query for n in found.neighbours}:
        q = x[row_of[os.path.relpath(query, collection)]]
        brute = np.sqrt(((x - q) ** 2).sum(1))
        listed = [n for n in found.neighbours if n.query == query]
        assert [n.rank for n in listed] == [1, 2, 3, 4, 5]
        assert np.allclose([n.distance for n in listed], np.sort(brute)[:5], atol=1e-4)
        assert np.allclose([brute[row_of[n.path]] for n in listed], [n.distance for n in listed], atol=1e-4)
