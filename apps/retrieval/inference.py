"""Batched inference over image datasets: the one loop behind feature caching, validation, evaluation and export.

Views are deterministic test-time transforms of a batch (float images in [0, 1]); caching the backbone features
of a few views gives the head stage cheap augmentation."""
from __future__ import annotations

from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm


View = Callable[[torch.Tensor], torch.Tensor]
ZOOM = 0.875  # share of each side kept by the zoom views


def _zoom(images: torch.Tensor) -> torch.Tensor:
    size = images.shape[-1]
    keep = max(1, round(size * ZOOM))
    top = (size - keep) // 2
    crop = images[..., top:top + keep, top:top + keep]
    return F.interpolate(crop, size=images.shape[-2:], mode="bilinear", align_corners=False)


# Cached views, in order: --feature-views N takes the first N.
VIEWS: tuple[View, ...] = (
    lambda x: x,
    lambda x: x.flip(-1),
    _zoom,
    lambda x: _zoom(x).flip(-1),
)


def collate(items: list[dict]) -> dict:
    """Batch ``image`` and ``index`` of the readable items; unreadable ones (``error``) are passed on as
    ``errors``: [(index, message)]."""
    good = [it for it in items if "error" not in it]
    return {
        "image": torch.stack([it["image"] for it in good]) if good else torch.empty(0, 3, 1, 1, dtype=torch.uint8),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "errors": [(it["index"], it["error"]) for it in items if "error" in it],
    }


def image_batches(dataset: Dataset, device: torch.device, batch_size: int, workers: int = 0,
                  progress: bool = False, desc: str = "embedding") -> Iterator[tuple[torch.Tensor, torch.Tensor, list]]:
    """Yield ``(indices (B,), images (B, 3, S, S) float in [0, 1] on device, errors)`` over ``dataset``, whose
    items are dicts with ``image`` uint8 (3, S, S) and ``index`` (or ``index`` and ``error``, a message)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate,
                        pin_memory=device.type == "cuda")
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        images = batch["image"].to(device, non_blocking=True).float().div_(255)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        yield batch["index"], images, batch["errors"]


@torch.no_grad()
def embed_dataset(fn: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, device: torch.device,
                  batch_size: int = 32, workers: int = 0, view: Optional[View] = None,
                  progress: bool = False, desc: str = "embedding") -> torch.Tensor:
    """``fn`` (e.g. ``model`` or ``model.features``) of every image of ``dataset`` (items as in
    :func:`image_batches`, none unreadable), optionally through ``view``: (N, D) float32 on the CPU, row i = item i.
    Runs under autocast on CUDA; the caller sets the model's mode (eval)."""
    result: Optional[torch.Tensor] = None
    for indices, images, errors in image_batches(dataset, device, batch_size, workers, progress, desc):
        if errors:
            raise ValueError(f"cannot embed: {errors[0][1]}")
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            out = fn(images if view is None else view(images)).float().cpu()
        if result is None:
            result = out.new_empty(len(dataset), *out.shape[1:])  # type: ignore[arg-type]
        result[indices] = out
    if result is None:
        raise ValueError("no images to embed")
    return result
