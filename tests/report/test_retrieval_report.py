import csv
import json

import numpy as np
import torch

from apps.retrieval.datasets import load_retrieval_split
from apps.retrieval.evaluate import report_order, write_report_files
from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.train import percent_metrics
from coseg.report.build import build_report
from tests.apps.retrieval_files import write_class_folders
from tests.report.report_runs import parse_page, run_files

CLASSES = ['a <b> & "c"', "plain", "third"]


def naive_order(matches):
    """Worst first by a loop: rank of the first match (none = after the last rank), larger first, then index."""
    first = []
    for q, row in enumerate(matches):
        hits = [rank for rank, hit in enumerate(row) if hit]
        first.append((-(hits[0] if hits else len(row)), q))
    return [q for _, q in sorted(first)]


def test_report_order_is_worst_first():
    matches = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype=bool)
    assert report_order(matches).tolist() == naive_order(matches) == [2, 4, 1, 3, 0, 5]


def retrieval_evaluation(tmp_path, queries=4):
    data = write_class_folders(tmp_path / "data", CLASSES, per_class=4)
    split = load_retrieval_split(data, "all", "folders")
    dataset = RetrievalImageDataset(split.records, 16)
    embeddings = torch.randn(len(dataset), 4) + 2 * dataset.labels[:, None].float()
    output = tmp_path / "eval"
    output.mkdir()
    summary = {**percent_metrics(embeddings, dataset.labels), "images": len(dataset), "classes": 3, "split": "all",
               "checkpoint": str(run_files(tmp_path / "run") / "best.safetensors")}
    (output / "summary.json").write_text(json.dumps(summary))
    write_report_files(embeddings, dataset, split.classes, output, queries=queries, k=5)
    return output, embeddings, dataset, split, summary


def test_neighbours_and_recall_curve_match_brute_force(tmp_path):
    output, embeddings, dataset, split, summary = retrieval_evaluation(tmp_path)
    with open(output / "recall_at_k.csv", newline="") as f:
        curve = {int(r["k"]): float(r["recall"]) for r in csv.DictReader(f)}
    assert sorted(curve) == list(range(1, 12))  # 12 images: K up to N - 1
    for k in (1, 2, 4, 8):
        assert abs(curve[k] - summary[f"R@{k}"]) < 1e-3
    assert all(curve[k] <= curve[k + 1] for k in range(1, 11)) and curve[11] == 100.0
    distances = torch.cdist(embeddings, embeddings).numpy()
    np.fill_diagonal(distances, np.inf)
    labels = dataset.labels.numpy()
    names = {str(r.path): split.classes[r.label] for r in dataset.records}
    index = {str(r.path): i for i, r in enumerate(dataset.records)}
    with open(output / "neighbours.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 5 and {r["order"] for r in rows} == {"0", "1", "2", "3"}
    for row in rows:
        q, hit = index[row["query"]], index[row["path"]]
        assert row["query_class"] == names[row["query"]] and row["class"] == names[row["path"]]
        assert row["correct"] == str(int(labels[q] == labels[hit]))
        assert abs(float(row["distance"]) - distances[q, hit]) < 1e-4
        assert abs(np.sort(distances[q])[int(row["rank"]) - 1] - distances[q, hit]) < 1e-4


def test_retrieval_report_page(tmp_path):
    output, *_ = retrieval_evaluation(tmp_path, queries=3)
    result = build_report(output, thumbnail=32, progress=False)
    assert result.sections == ["Training: run", "Retrieval evaluation: eval"] and not result.problems
    page = parse_page(result.path)
    text = result.path.read_text(encoding="utf-8")
    assert len(page.images) == 2 + 1 + 3 * (1 + 5)  # training plots, R@K curve, 3 queries with 5 neighbours
    assert all((output / src).is_file() for src in page.images)
    assert "s2_recall.png" in text and "class a &lt;b&gt; &amp; &quot;c&quot;" in text
    with open(output / "neighbours.csv", newline="", encoding="utf-8") as f:
        correct = [r["correct"] for r in csv.DictReader(f)]
    assert text.count('<figure class="right">') == text.count('class="mark-right"') == correct.count("1")
    assert text.count('<figure class="wrong">') == text.count('class="mark-wrong"') == correct.count("0")


def test_truncated_neighbours_file_drops_the_cut_row(tmp_path):
    output, *_ = retrieval_evaluation(tmp_path, queries=3)
    neighbours = output / "neighbours.csv"
    neighbours.write_text(neighbours.read_text().rstrip("\n").rsplit(",", 3)[0])
    result = build_report(output, thumbnail=32, progress=False)
    assert not result.problems and len(parse_page(result.path).images) == 2 + 1 + 3 * (1 + 5) - 1


def test_result_file_without_a_column_is_named_in_the_reason(tmp_path):
    output, *_ = retrieval_evaluation(tmp_path, queries=3)
    neighbours = output / "neighbours.csv"
    neighbours.write_text("\n".join(line.rsplit(",", 1)[0] for line in neighbours.read_text().splitlines()) + "\n")
    [(heading, reason)] = build_report(output, thumbnail=32, progress=False).problems
    assert heading == "Retrieval evaluation: eval" and reason.endswith("neighbours.csv: missing column(s) correct")


def test_retrieval_report_shows_the_thumbnails_of_a_project_moved_with_its_data(tmp_path):
    import shutil

    retrieval_evaluation(tmp_path / "project", queries=3)
    shutil.move(tmp_path / "project", tmp_path / "moved")  # neighbours.csv's absolute paths are gone
    result = build_report(tmp_path / "moved" / "eval", thumbnail=16, progress=False)
    text = result.path.read_text(encoding="utf-8")
    assert not result.problems and "not shown" not in text  # was: every image "not shown (cannot read file)"
    assert len(parse_page(result.path).images) == 1 + 3 * (1 + 5)  # the R@K curve, 3 queries with 5 neighbours


def test_neighbours_file_without_relative_paths_is_still_read(tmp_path):
    output, *_ = retrieval_evaluation(tmp_path, queries=3)
    neighbours = output / "neighbours.csv"
    with open(neighbours, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(neighbours, "w", newline="", encoding="utf-8") as f:  # as written before the *_relative columns
        writer = csv.DictWriter(f, ["order", "query", "query_class", "rank", "path", "class", "distance", "correct"],
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    result = build_report(output, thumbnail=16, progress=False)
    assert not result.problems and "not shown" not in result.path.read_text(encoding="utf-8")
    assert len(parse_page(result.path).images) == 2 + 1 + 3 * (1 + 5)


def test_retrieval_report_tells_seen_classes_and_left_out_files(tmp_path):
    """As ``retrieval evaluate`` prints them: the classes the model trained / chose its epoch on, and the files left
    out of the scores (was: neither on the page)."""
    output, *_ = retrieval_evaluation(tmp_path, queries=2)
    summary = json.loads((output / "summary.json").read_text())
    skipped = [f"data/plain/bad{i} <x>.jpg: cannot decode" for i in range(23)]
    summary.update(trained_on=2, validated_on=1, skipped=skipped)
    (output / "summary.json").write_text(json.dumps(summary))
    text = build_report(output, thumbnail=32, progress=False).path.read_text(encoding="utf-8")
    assert "2 of the 3 evaluated classes were used to train this model" in text
    assert "1 of the 3 evaluated classes was this model's validation classes" in text
    assert "23 file(s) left out of the scores" in text and "… and 3 more" in text
    assert "bad19 &lt;x&gt;.jpg: cannot decode" in text and "bad20 " not in text
