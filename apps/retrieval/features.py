"""Backbone features computed once per image (and view) for the head stage, optionally kept on disk.

A disk entry is named by a hash of what determines it: the model's config, the backbone and pooling weights, the
view, and the decoded pixels of every image in order. So a changed image, backbone or image size computes the
features again, and runs that share ``cache_dir`` (e.g. the methods of a benchmark) compute them once."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.inference import VIEWS, Embedded, embed_readable, item_failure, require_every
from apps.retrieval.model import RetrievalModel
from coseg.atomic import PathLike, write_bytes_atomic
from coseg.data.io import printable
from metric._checks import as_class_ids, check_shape

# The model config entries that change the pooled features (the head's do not).
FEATURE_CONFIG = ("backbone", "pooling", "mean", "std", "pool_stages")
# Class ids of images: a tensor, a numpy array or a list (``RetrievalSplit.labels``).
Labels = Union[torch.Tensor, np.ndarray, Sequence[int]]


def features_key(model: RetrievalModel, dataset: RetrievalImageDataset,
                 view: int) -> tuple[str, torch.Tensor, list[tuple[int, str]]]:
    """Hex digest naming the features of ``view`` of ``dataset``'s images under ``model``'s backbone, read from
    every item: with the indices of the items that have an image (ascending) and the (index, message) of those
    whose file could not be read (left out, or replaced by the dataset: see :func:`item_failure`)."""
    digest = hashlib.sha1()
    described = {key: model.config[key] for key in FEATURE_CONFIG}
    digest.update(json.dumps({**described, "view": view, "size": dataset.image_size}, sort_keys=True).encode())
    for module in (model.backbone, model.pooling):
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    kept, failed = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        if (message := item_failure(item)) is not None:
            failed.append((i, message))
        if "error" in item:
            digest.update(b"left out %d" % i)
        else:
            digest.update(item["image"].numpy().tobytes())
            kept.append(i)
    return digest.hexdigest(), torch.tensor(kept, dtype=torch.long), failed


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
def readable_features(model: RetrievalModel, dataset: RetrievalImageDataset, views: int, device: torch.device,
                      batch_size: int = 32, workers: int = 0, cache_dir: Optional[PathLike] = None,
                      progress: bool = False) -> Embedded:
    """Pooled backbone features of the images of ``dataset`` that can be read, under the first ``views`` of
    ``VIEWS``: ``values`` (views, M, feature_dim) float32 on the CPU, of the M images (``kept``) read in every view;
    ``unreadable`` as in :func:`embed_readable`. The model is put in eval mode. With ``cache_dir``, features found
    there are read instead of computed and computed ones are stored (atomically)."""
    if not 1 <= views <= len(VIEWS):
        raise ValueError(f"views must be in [1, {len(VIEWS)}], got {views}")
    model.eval()
    found: list[tuple[torch.Tensor, torch.Tensor]] = []  # each view's (features, indices)
    failed: dict[int, str] = {}
    for view in range(views):
        path, known = None, None  # the disk entry and the items the key found unreadable
        if cache_dir is not None:
            key, kept, unreadable = features_key(model, dataset, view)
            known = [i for i, _ in unreadable]
            failed.update((i, m) for i, m in unreadable if i not in failed)
            path = Path(cache_dir) / f"features-{key}.npy"
            stored = _load(path, len(kept), model.feature_dim) if path.is_file() else None
            if stored is not None:
                found.append((stored, kept))
                continue
        embedded = embed_readable(model.features, dataset, device, batch_size, workers, VIEWS[view], progress,
                                  desc=f"backbone features, view {view + 1}/{views}")
        failed.update((i, m) for i, m in embedded.unreadable if i not in failed)
        if path is not None and [i for i, _ in embedded.unreadable] == known:  # else one failed since the key
            buffer = io.BytesIO()
            np.save(buffer, embedded.values.numpy())
            write_bytes_atomic(path, buffer.getvalue())
        found.append((embedded.values, embedded.kept))
    common = found[0][1]
    for _, indices in found[1:]:
        common = common[torch.isin(common, indices)]
    values = torch.stack([features[torch.isin(indices, common)] for features, indices in found])
    return Embedded(values, common, sorted(failed.items()))


def cached_features(model: RetrievalModel, dataset: RetrievalImageDataset, views: int, device: torch.device,
                    batch_size: int = 32, workers: int = 0, cache_dir: Optional[PathLike] = None,
                    progress: bool = False, replaced: Optional[list[tuple[int, str]]] = None) -> torch.Tensor:
    """:func:`readable_features` of every image of ``dataset``: (views, N, feature_dim); ``ValueError`` naming the
    file of an image left out. The (index, message naming the file) of images that ``dataset`` replaced by another
    of their class (``substitute``) are added to ``replaced``."""
    found = readable_features(model, dataset, views, device, batch_size, workers, cache_dir, progress)
    require_every(found, len(dataset))
    if replaced is not None:
        replaced.extend(found.unreadable)
    return found.values


def inference_views(model: RetrievalModel) -> int:
    """How many of ``VIEWS`` ``model``'s forward averages: the image, and its mirror with ``flip_average``."""
    return 2 if model.flip_average else 1


def inference_features(model: RetrievalModel, dataset: RetrievalImageDataset, device: torch.device,
                       batch_size: int = 32, workers: int = 0, cache_dir: Optional[PathLike] = None,
                       progress: bool = False) -> torch.Tensor:
    """The features (N, feature_dim) that ``model``'s forward embeds, through :func:`cached_features`: of the
    images as they are, or with ``flip_average`` the mean of theirs and their mirror's."""
    return cached_features(model, dataset, inference_views(model), device, batch_size, workers, cache_dir,
                           progress).mean(0)


def unreadable_files(dataset: RetrievalImageDataset,
                     unreadable: Sequence[tuple[int, str]]) -> list[tuple[Path, str]]:
    """(file, problem) of the (index, message) of items of ``dataset`` that could not be read."""
    files = []
    for i, message in unreadable:
        path = dataset.records[i].path
        files.append((path, message.removeprefix(f"{printable(path)}: ")))
    return files


def label_tensor(labels: Labels, rows: int, name: str = "labels") -> torch.Tensor:
    """``labels`` (rows,) as an int64 tensor; ``TypeError`` for values that are not integers (bools are two
    classes), ``ValueError`` for another length."""
    tensor = as_class_ids(labels, name)
    check_shape(tensor, [str(rows)], name)
    if tensor.numel() and (tensor.is_floating_point() or tensor.is_complex()):  # torch.as_tensor([]) is float
        raise TypeError(f"{name} must be integer class ids, got {tensor.dtype}")
    return tensor.long()


class FeatureDataset(Dataset):
    """Cached features (V, N, F) of N images under V views with their labels (N,). Item ``i``: ``features`` (F,)
    of a view drawn at random (torch's global generator) for image i, ``label`` and ``index``."""

    def __init__(self, features: torch.Tensor, labels: Labels) -> None:
        sizes = check_shape(features, ["V", "N", "F"], "features")
        self.features = features
        self.labels = label_tensor(labels, sizes["N"])

    def __len__(self) -> int:
        return self.features.shape[1]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        view = int(torch.randint(self.features.shape[0], ())) if self.features.shape[0] > 1 else 0
        return {"features": self.features[view, i], "label": int(self.labels[i]), "index": i}
