"""Batched inference over image datasets: the one loop behind feature caching, validation, evaluation and export.

Views are deterministic test-time transforms of a batch (float images in [0, 1]); caching the backbone features
of a few views gives the head stage cheap augmentation."""
from __future__ import annotations

from typing import Callable, Iterator, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from coseg.data.io import printable


View = Callable[[torch.Tensor], torch.Tensor]
ZOOM = 0.875  # share of each side kept by the zoom views


def _zoom(images: torch.Tensor) -> torch.Tensor:
    height, width = images.shape[-2:]
    rows, columns = max(1, round(height * ZOOM)), max(1, round(width * ZOOM))
    top, left = (height - rows) // 2, (width - columns) // 2
    crop = images[..., top:top + rows, left:left + columns]
    return F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)


# Cached views, in order: --feature-views N takes the first N.
VIEWS: tuple[View, ...] = (
    lambda x: x,
    lambda x: x.flip(-1),
    _zoom,
    lambda x: _zoom(x).flip(-1),
)


def item_failure(item: dict) -> Optional[str]:
    """The message naming the file that item could not be read from: its ``error`` (the item is left out), or the
    file another image took the place of (``unreadable``, set by a dataset that substitutes); None when read."""
    if "error" in item:
        return item["error"]
    if item.get("unreadable"):
        return f"{printable(item['unreadable'])}: {item['unreadable_problem']}"
    return None


def collate(items: list[dict]) -> dict:
    """Batch ``image`` and ``index`` of the items that have an image; the files that could not be read are passed on
    as ``errors``: [(index, message)], the item left out (``error``) or replaced by another image (see
    :func:`item_failure`; its index is then also in ``index``)."""
    good = [it for it in items if "error" not in it]
    return {
        "image": torch.stack([it["image"] for it in good]) if good else torch.empty(0, 3, 1, 1, dtype=torch.uint8),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "errors": [(it["index"], message) for it in items if (message := item_failure(it)) is not None],
    }


def image_batches(dataset: Dataset, device: torch.device, batch_size: int, workers: int = 0,
                  progress: bool = False, desc: str = "embedding") -> Iterator[tuple[torch.Tensor, torch.Tensor, list]]:
    """Yield ``(indices (B,), images (B, 3, S, S) float in [0, 1] on device, errors)`` over ``dataset``, whose
    items are dicts with ``image`` uint8 (3, S, S) and ``index`` (or ``index`` and ``error``, a message). Draws
    nothing from torch's global generator, so a pass leaves a training run's random numbers as they are: the same
    whether features are computed or read from a cache."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                        pin_memory=device.type == "cuda", generator=torch.Generator())  # its workers' base seed
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        images = batch["image"].to(device, non_blocking=True).float().div_(255)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        yield batch["index"], images, batch["errors"]


class Embedded(NamedTuple):
    """What :func:`embed_readable` computed: ``values`` (M, D) float32 on the CPU (per view, (views, M, D), from
    ``apps.retrieval.features.readable_features``), row j = item ``kept[j]`` (ascending), and ``unreadable``:
    [(index, message naming the file)] of the items whose file could not be read, in index order: left out, or
    (index in ``kept``) replaced by another image by the dataset."""

    values: torch.Tensor
    kept: torch.Tensor
    unreadable: list[tuple[int, str]]


@torch.no_grad()
def embed_readable(fn: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, device: torch.device,
                   batch_size: int = 32, workers: int = 0, view: Optional[View] = None, progress: bool = False,
                   desc: str = "embedding") -> Embedded:
    """``fn`` (e.g. ``model`` or ``model.features``) of the images of ``dataset`` that can be read (items as in
    :func:`image_batches`), optionally through ``view``. Runs under autocast on CUDA; the caller sets the model's
    mode (eval). Raises ``ValueError`` naming the first file when no image can be read."""
    rows, kept, unreadable = [], [], []
    for indices, images, errors in image_batches(dataset, device, batch_size, workers, progress, desc):
        unreadable.extend(errors)
        if len(indices):
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                rows.append(fn(images if view is None else view(images)).float().cpu())
            kept.append(indices)
    if not rows:
        raise ValueError("no images to embed" if not unreadable else
                         f"none of the {len(dataset)} image(s) can be read any more; first: {unreadable[0][1]}")
    return Embedded(torch.cat(rows), torch.cat(kept), sorted(unreadable))


def embed_dataset(fn: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, device: torch.device,
                  batch_size: int = 32, workers: int = 0, view: Optional[View] = None,
                  progress: bool = False, desc: str = "embedding") -> torch.Tensor:
    """:func:`embed_readable` of every image of ``dataset``: (N, D), row i = item i; ``ValueError`` naming the file
    of an item left out (one replaced by its dataset is embedded as replaced)."""
    embedded = embed_readable(fn, dataset, device, batch_size, workers, view, progress, desc)
    require_every(embedded, len(dataset))
    return embedded.values


def require_every(embedded: Embedded, total: int) -> None:
    """Raise ``ValueError`` naming the first file left out when ``embedded`` lacks any of the ``total`` items."""
    if len(embedded.kept) < total:
        left_out = set(range(total)) - set(embedded.kept.tolist())
        raise ValueError(f"cannot embed: {next(m for i, m in embedded.unreadable if i in left_out)}")
