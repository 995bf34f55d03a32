"""``coseg retrieval evaluate``: Recall@1/2/4/8, MAP@R and NMI (percent) of a model on a labelled split."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from apps.retrieval.datasets import load_retrieval_split
from apps.retrieval.features import inference_views, readable_features, unreadable_files
from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.model import RetrievalModel, load_retrieval_model
from apps.retrieval.train import NO_QUERY, ONE_CLASS, percent_metrics, why_unscorable
from coseg.atomic import PathLike, write_text_atomic
from coseg.checkpoints import DEFAULT_IMAGE_SIZE
from coseg.data import ImageCache, Problem, printable
from coseg.evaluate import seen_overlap
from coseg.models.checkpoint import recorded_image_size
from coseg.report.build import remove_report
from coseg.report.files import (NEIGHBOUR_COLUMNS, NEIGHBOURS, RECALL_CURVE, check_report_outside, path_cells,
                                record_model_file, record_path)
from metric._checks import check_count
from metric.retrieval.knn import knn
from metric.retrieval.recall_at_k import recall_hits

CURVE_MAX_K = 32  # the R@K curve of a report runs from K = 1 to this (or to N − 1)
LEFT_OUT = "no longer readable during the evaluation: left out of the scores"


def load_for_retrieval(checkpoint: PathLike, device: torch.device,
                       image_size: Optional[int] = None) -> tuple[RetrievalModel, int]:
    """The model of ``checkpoint`` in eval mode on ``device`` and its inference size: ``image_size`` if given,
    else the size it was trained at (its metadata), else 224."""
    model = load_retrieval_model(checkpoint, map_location="cpu").to(device)
    if image_size is None:
        image_size = recorded_image_size(checkpoint) or DEFAULT_IMAGE_SIZE
    check_count(image_size, 1, "image_size")
    return model, image_size


@torch.no_grad()
def embed_split(model: RetrievalModel, dataset: RetrievalImageDataset, device: torch.device, batch_size: int = 32,
                workers: int = 0, cache_dir: Optional[PathLike] = None,
                progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, list[tuple[Path, str]]]:
    """Embeddings (M, D) of the M images of ``dataset`` that can still be read, their indices (M,), and the
    (file, problem) of those that cannot: the head on the backbone's features, which are read from ``cache_dir``
    when an earlier run with the same backbone stored them (see ``apps.retrieval.features``); as the model's forward
    embeds them (mirror-averaged with ``flip_average``)."""
    model.eval()
    found = readable_features(model, dataset, inference_views(model), device, batch_size, workers, cache_dir,
                              progress)
    features = found.values.mean(0)
    embeddings = torch.cat([model.embed_features(chunk.to(device)).float().cpu() for chunk in features.split(4096)])
    return embeddings, found.kept, unreadable_files(dataset, found.unreadable)


@dataclass
class Evaluation:
    summary: dict
    skipped: list[tuple[Path, str]]  # at start-up, then during the evaluation (``unreadable``)
    problems: list[Problem]
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # decoded, then no longer readable: not scored
    seen: dict[str, list[str]] = field(default_factory=dict)  # evaluated classes it trained/validated on: seen_overlap


def report_order(matches: np.ndarray) -> np.ndarray:
    """Query indices worst first: by the rank of the first neighbour of the query's class, descending (queries with
    none among their (Q, k) ``matches`` first), ties by query index."""
    first = np.where(matches.any(axis=1), matches.argmax(axis=1), matches.shape[1])
    return np.lexsort((np.arange(len(first)), -first))


def write_report_files(embeddings: torch.Tensor, dataset: RetrievalImageDataset, classes: Sequence[str],
                       output: Path, queries: int = 24, k: int = 8, kept: Optional[torch.Tensor] = None) -> None:
    """Of the images ``kept`` of ``dataset`` (default: all), embedding row j = image ``kept[j]``:
    ``output/recall_at_k.csv`` (k, recall in percent for K = 1 … min(32, N − 1)) and ``output/neighbours.csv``
    (the ``k`` nearest neighbours of ``queries`` queries taken at even steps along the worst-first order, so both
    failures and successes are shown; Euclidean distances in embedding units; image paths absolute and relative to
    ``output``). As in the scores, the images of single-image classes are references only, never queries."""
    kept = torch.arange(len(dataset)) if kept is None else kept
    labels = dataset.labels[kept].numpy()
    depth = min(max(k, CURVE_MAX_K), len(labels) - 1)
    if depth < 1:
        raise ValueError("a retrieval report needs at least 2 images")
    squared, found = knn(embeddings.float().numpy(), None, depth)
    matches = labels[found] == labels[:, None]
    scored = np.flatnonzero(np.bincount(labels)[labels] > 1)
    ks = np.arange(1, depth + 1)
    recall = 100.0 * recall_hits(matches[scored], ks).mean(axis=0)
    write_text_atomic(output / RECALL_CURVE, "k,recall\n" + "".join(f"{a},{b:.4f}\n" for a, b in zip(ks, recall)))
    order = scored[report_order(matches[scored])]
    shown = order[np.unique(np.linspace(0, len(order) - 1, min(queries, len(order))).round().astype(int))]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(NEIGHBOUR_COLUMNS)
    # built from elsewhere or moved with the data
    paths = [path_cells(dataset.records[i].path, output) for i in kept.tolist()]
    names = [printable(c) for c in classes]  # folder names that are not UTF-8 shown with \xNN escapes
    for n, q in enumerate(shown.tolist()):
        for rank in range(min(k, depth)):
            hit = int(found[q, rank])
            writer.writerow([n, *paths[q], names[labels[q]], rank + 1, *paths[hit], names[labels[hit]],
                             f"{float(np.sqrt(max(squared[q, rank], 0.0))):.6f}", int(matches[q, rank])])
    write_text_atomic(output / NEIGHBOURS, buffer.getvalue())


def write_evaluation(summary: dict, embeddings: torch.Tensor, dataset: RetrievalImageDataset,
                     classes: Sequence[str], output: Path, report_queries: int = 0,
                     kept: Optional[torch.Tensor] = None) -> None:
    """``output/summary.json``, written last, and with ``report_queries`` > 0 the report files before it
    (:func:`write_report_files`, of the images ``kept``); an earlier summary.json is removed first and report files
    of an earlier evaluation (report.html too) are removed when this one writes none, so where summary.json is, the
    report files beside it are of the same evaluation (an interrupted write leaves no summary.json)."""
    if report_queries <= 0:  # first: refused while a `coseg report` writes it, the earlier evaluation is whole
        remove_report(output)
    (output / "summary.json").unlink(missing_ok=True)
    if report_queries > 0:
        write_report_files(embeddings, dataset, classes, output, report_queries, kept=kept)
    else:
        for name in (NEIGHBOURS, RECALL_CURVE):
            (output / name).unlink(missing_ok=True)
    write_text_atomic(output / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


def check_scorable(labels: torch.Tensor, classes: Sequence[str], split: str, data: PathLike) -> int:
    """The number of queries among the images of ``labels`` (those of a class with another image); ``ValueError``
    when there is none, or when a single class has images (every score would be 100 whatever the model)."""
    why = why_unscorable(labels)
    if why == NO_QUERY:
        raise ValueError(f"no class of split '{split}' under {printable(data)} has two readable images: nothing to "
                         f"retrieve for any of its {len(labels)} image(s)")
    if why == ONE_CLASS:
        only = printable(classes[int(labels[0])])
        raise ValueError(f"only the class '{only}' of split '{split}' under {printable(data)} has readable images: "
                         "R@K, MAP@R and NMI over a single class are 100 whatever the model; evaluate a split of "
                         "at least 2 classes")
    return int(labels.bincount()[labels].gt(1).sum())


def evaluate_checkpoint(checkpoint: PathLike, data: PathLike, output: Optional[PathLike] = None, layout: str = "auto",
                        split: str = "test", train_classes: Optional[Sequence[str]] = None,
                        image_size: Optional[int] = None, batch_size: int = 32,
                        device: Union[str, torch.device] = "cpu", workers: int = 0,
                        cache_dir: Optional[PathLike] = None, progress: bool = False,
                        report_queries: int = 0) -> Evaluation:
    """Score the model of ``checkpoint`` on ``split`` of the data set at ``data``: every image whose class has another
    image is a query against all the others (images of single-image classes are references only).
    Writes ``output/summary.json`` (atomically) when ``output`` is given: R@1, R@2, R@4, R@8, MAP@R, NMI in percent,
    and the images, queries, classes, split, checkpoint and image size used, the unreadable images and the problems
    of the data set's index files; with ``report_queries`` > 0 also the files of its report
    (:func:`write_evaluation`). An image decoded at start-up that can no longer be read when it is embedded (a disk
    cache's file and its source gone) is left out of the scores, counted in ``unreadable`` and listed in
    ``skipped``. Raises ``ValueError`` when no class has two readable images, or only one class has readable images
    (every score would be 100 whatever the model). Of the classes scored, the numbers the model file records it
    was trained and validated on are ``trained_on`` and ``validated_on`` in the summary (when it records them; the
    classes in ``seen``). A report (``report_queries`` > 0) into a folder inside ``data`` is refused before any work
    (``ConfigError``): the images of its page would be taken for a class of the data set by a later evaluation; so
    is an ``output`` that is a file, and a ``batch_size`` that is no integer >= 1 or ``workers`` or
    ``report_queries`` no integer >= 0 (``ValueError``)."""
    if output is not None and Path(output).exists() and not Path(output).is_dir():
        raise ValueError(f"{printable(output)}: a file, not a folder for summary.json; choose another output folder")
    check_count(batch_size, 1, "batch_size")  # before the images are decoded
    check_count(workers, 0, "workers")
    check_count(report_queries, 0, "report_queries")
    if output is not None and report_queries > 0:
        check_report_outside(output, data, "a class")
    device = torch.device(device)
    model, size = load_for_retrieval(checkpoint, device, image_size)
    records = load_retrieval_split(data, split, layout, train_classes)
    dataset = RetrievalImageDataset(records.records, size, ImageCache(size, cache_dir=cache_dir, progress=progress))
    check_scorable(dataset.labels, records.classes, split, data)
    embeddings, kept, unreadable = embed_split(model, dataset, device, batch_size, workers, cache_dir, progress)
    labels = dataset.labels[kept]
    queries = check_scorable(labels, records.classes, split, data)
    skipped = dataset.skipped + [(path, f"{problem} ({LEFT_OUT})") for path, problem in unreadable]
    seen = seen_overlap(checkpoint, [records.classes[i] for i in labels.unique().tolist()])
    summary = {
        **percent_metrics(embeddings, labels),
        "images": len(labels), "queries": queries, "classes": int(labels.unique().numel()), "split": split,
        "layout": records.layout, "image_size": size,
        "skipped": [f"{printable(path)}: {reason}" for path, reason in skipped], "unreadable": len(unreadable),
        "problems": [str(problem) for problem in records.problems],
        **{key: len(names) for key, names in seen.items()},
    }
    record_path(summary, "data", data, output if output is not None else Path.cwd())
    record_model_file(summary, checkpoint, output if output is not None else Path.cwd())
    if output is not None:
        write_evaluation(summary, embeddings, dataset, records.classes, Path(output), report_queries, kept)
    return Evaluation(summary, skipped, records.problems, unreadable, seen)

