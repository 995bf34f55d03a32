"""``coseg retrieval evaluate``: Recall@1/2/4/8, MAP@R and NMI (percent) of a model on a labelled split."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from apps.retrieval.datasets import load_retrieval_split
from apps.retrieval.features import cached_features
from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.model import RetrievalModel, load_retrieval_model
from apps.retrieval.train import percent_metrics
from coseg.atomic import PathLike, write_text_atomic
from coseg.checkpoints import DEFAULT_IMAGE_SIZE
from coseg.data import ImageCache, printable
from coseg.models import checkpoint_metadata


def load_for_retrieval(checkpoint: PathLike, device: torch.device,
                       image_size: Optional[int] = None) -> tuple[RetrievalModel, int]:
    """The model of ``checkpoint`` in eval mode on ``device`` and its inference size: ``image_size`` if given,
    else the size it was trained at (its metadata), else 224."""
    model = load_retrieval_model(checkpoint, map_location="cpu").to(device).eval()
    if image_size is None:
        image_size = int(checkpoint_metadata(checkpoint).get("image_size", DEFAULT_IMAGE_SIZE))
    if image_size < 1:
        raise ValueError(f"image size must be >= 1, got {image_size}")
    return model, image_size


@torch.no_grad()
def embed_split(model: RetrievalModel, dataset: RetrievalImageDataset, device: torch.device, batch_size: int = 32,
                workers: int = 0, cache_dir: Optional[PathLike] = None, progress: bool = False) -> torch.Tensor:
    """Embeddings (N, D) of ``dataset``'s images: the head on the backbone's features, which are read from
    ``cache_dir`` when an earlier run with the same backbone stored them (see ``apps.retrieval.features``)."""
    model.eval()
    features = cached_features(model, dataset, 1, device, batch_size, workers, cache_dir, progress)[0]
    return torch.cat([model.embed_features(chunk.to(device)).float().cpu() for chunk in features.split(4096)])


@dataclass
class Evaluation:
    summary: dict
    skipped: list[tuple[Path, str]]


def evaluate_checkpoint(checkpoint: PathLike, data: PathLike, output: Optional[PathLike] = None, layout: str = "auto",
                        split: str = "test", train_classes: Optional[Sequence[str]] = None,
                        image_size: Optional[int] = None, batch_size: int = 32,
                        device: Union[str, torch.device] = "cpu", workers: int = 0,
                        cache_dir: Optional[PathLike] = None, progress: bool = False) -> Evaluation:
    """Score the model of ``checkpoint`` on ``split`` of the data set at ``data``: every image is a query against all
    the others (GUIDE §4). Writes ``output/summary.json`` (atomically) when ``output`` is given: R@1, R@2, R@4,
    R@8, MAP@R, NMI in percent, and the images, classes, split, checkpoint and image size used."""
    device = torch.device(device)
    model, size = load_for_retrieval(checkpoint, device, image_size)
    records = load_retrieval_split(data, split, layout, train_classes)
    dataset = RetrievalImageDataset(records.records, size, ImageCache(size, cache_dir=cache_dir, progress=progress))
    embeddings = embed_split(model, dataset, device, batch_size, workers, cache_dir, progress)
    summary = {
        **percent_metrics(embeddings, dataset.labels),
        "images": len(dataset), "classes": int(dataset.labels.unique().numel()), "split": split,
        "layout": records.layout, "data": str(data), "checkpoint": str(checkpoint), "image_size": size,
        "skipped": [f"{printable(path)}: {reason}" for path, reason in dataset.skipped],
    }
    if output is not None:
        write_text_atomic(Path(output) / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return Evaluation(summary, dataset.skipped)
