"""Backbone features computed once per image (and view) for the head stage, optionally kept on disk.

A disk entry is named by a hash of what determines it: the model's config, the backbone and pooling weights, the
view, and the decoded pixels of every image in order. So a changed image, backbone or image size computes the
features again, and runs that share ``cache_dir`` (e.g. the methods of a benchmark) compute them once."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.inference import VIEWS, embed_dataset
from apps.retrieval.model import RetrievalModel
from coseg.atomic import PathLike, write_bytes_atomic
from metric._checks import check_shape

# The model config entries that change the pooled features (the head's do not).
FEATURE_CONFIG = ("backbone", "pooling", "mean", "std", "pool_stages")


def features_key(model: RetrievalModel, dataset: RetrievalImageDataset, view: int) -> str:
    """Hex digest naming the features of ``view`` of ``dataset``'s images under ``model``'s backbone."""
    digest = hashlib.sha1()
    described = {key: model.config[key] for key in FEATURE_CONFIG}
    digest.update(json.dumps({**described, "view": view, "size": dataset.image_size}, sort_keys=True).encode())
    for module in (model.backbone, model.pooling):
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for i in range(len(dataset)):
        digest.update(dataset[i]["image"].numpy().tobytes())  # type: ignore[union-attr]
    return digest.hexdigest()


def _load(path: Path, rows: int, dim: int) -> Optional[torch.Tensor]:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception:  # a damaged file fails in many ways (ValueError, EOFError, TokenError from a garbled header...)
        return None  # and is computed again
    if not isinstance(array, np.ndarray):  # an .npz archive where an array belongs
        array.close()
        return None
    if array.shape != (rows, dim) or array.dtype != np.float32:
        return None
    return torch.from_numpy(array)


@torch.no_grad()
def cached_features(model: RetrievalModel, dataset: RetrievalImageDataset, views: int, device: torch.device,
                    batch_size: int = 32, workers: int = 0, cache_dir: Optional[PathLike] = None,
                    progress: bool = False) -> torch.Tensor:
    """Pooled backbone features of every image of ``dataset`` under the first ``views`` of ``VIEWS``:
    (views, N, feature_dim) float32 on the CPU. The model is put in eval mode. With ``cache_dir``, features found
    there are read instead of computed and computed ones are stored (atomically)."""
    if not 1 <= views <= len(VIEWS):
        raise ValueError(f"views must be in [1, {len(VIEWS)}], got {views}")
    model.eval()
    result = []
    for view in range(views):
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"features-{features_key(model, dataset, view)}.npy"
            stored = _load(path, len(dataset), model.feature_dim) if path.is_file() else None
            if stored is not None:
                result.append(stored)
                continue
        features = embed_dataset(model.features, dataset, device, batch_size, workers, VIEWS[view], progress,
                                 desc=f"backbone features, view {view + 1}/{views}")
        if path is not None:
            buffer = io.BytesIO()
            np.save(buffer, features.numpy())
            write_bytes_atomic(path, buffer.getvalue())
        result.append(features)
    return torch.stack(result)


def inference_features(model: RetrievalModel, dataset: RetrievalImageDataset, device: torch.device,
                       batch_size: int = 32, workers: int = 0, cache_dir: Optional[PathLike] = None,
                       progress: bool = False) -> torch.Tensor:
    """The features (N, feature_dim) that ``model``'s forward embeds, through :func:`cached_features`: of the
    images as they are, or with ``flip_average`` the mean of theirs and their mirror's."""
    views = 2 if model.flip_average else 1
    return cached_features(model, dataset, views, device, batch_size, workers, cache_dir, progress).mean(0)


class FeatureDataset(Dataset):
    """Cached features (V, N, F) of N images under V views with their labels (N,). Item ``i``: ``features`` (F,)
    of a view drawn at random (torch's global generator) for image i, ``label`` and ``index``."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        sizes = check_shape(features, ["V", "N", "F"], "features")
        check_shape(labels, [str(sizes["N"])], "labels")
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return self.features.shape[1]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        view = int(torch.randint(self.features.shape[0], ())) if self.features.shape[0] > 1 else 0
        return {"features": self.features[view, i], "label": int(self.labels[i]), "index": i}
