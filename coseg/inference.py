"""Batched inference: the one prediction loop behind validation, evaluation and ``coseg predict``."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from coseg.data import DataFileError, Sample, read_image, resize_image
from coseg.models import CosegNet, GroupRefinement


class ImageFileDataset(Dataset):
    """Images decoded on demand (for folders too large to cache) and resized to ``image_size``.

    Item: ``{"image": uint8 (3, S, S), "index": i, "size": (2,) original (H, W)}``, or ``{"index": i, "error":
    "<file>: <problem>"}`` for a file that cannot be read (the batch goes on without it)."""

    def __init__(self, paths: Sequence[Path], image_size: int) -> None:
        self.paths = list(paths)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        try:
            image = read_image(self.paths[i])
        except DataFileError as e:
            return {"index": i, "error": str(e)}
        return {"image": torch.from_numpy(resize_image(image, self.image_size)).permute(2, 0, 1).contiguous(),
                "index": i, "size": torch.tensor(image.shape[:2], dtype=torch.long)}


def collate_images(items: list[dict]) -> dict:
    """Batch image, index and original size; items that failed to decode are passed on under ``errors``."""
    good = [it for it in items if "error" not in it]
    return {
        "image": torch.stack([it["image"] for it in good]) if good else torch.empty(0, 3, 1, 1, dtype=torch.uint8),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "size": torch.stack([it["size"] for it in good]) if good else torch.empty(0, 2, dtype=torch.long),
        "errors": [(it["index"], it["error"]) for it in items if "error" in it],
    }


Prediction = Union[tuple[int, torch.Tensor], tuple[int, str]]


def group_ids(samples: Sequence[Sample]) -> list[int]:
    """One integer id per sample, equal for samples of the same group."""
    index: dict[str, int] = {}
    return [index.setdefault(s.group, len(index)) for s in samples]


def group_batches(groups: Sequence[int]) -> list[list[int]]:
    """Dataset indices grouped by group id (one batch per group), groups in order of first appearance."""
    batches: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        batches.setdefault(int(group), []).append(index)
    return list(batches.values())


def predict_dataset(model: CosegNet, dataset: Dataset, device: torch.device, batch_size: int = 8, workers: int = 0,
                    original_size: bool = False, groups: Optional[Sequence[int]] = None,
                    refinement: Optional[GroupRefinement] = None) -> Iterator[tuple[int, Union[torch.Tensor, str]]]:
    """Yield ``(index, foreground probability (H, W) float32 on the CPU)`` for every item of ``dataset``
    (a CosegDataset or ImageFileDataset), at the dataset's size or resized bilinearly to the image's original
    size; for an item that could not be read, ``(index, error message)``.

    ``groups`` (one id per item): group mode, each group is predicted together (``model.predict_group``, in
    chunks of ``batch_size`` images sharing the group's consensus), optionally refined through the group's
    pixel embeddings (``refinement``); otherwise images are predicted alone."""
    if groups is not None:
        if len(groups) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"groups has {len(groups)} entries for {len(dataset)} images")  # type: ignore[arg-type]
        loader = DataLoader(dataset, batch_sampler=group_batches(groups), num_workers=workers,
                            collate_fn=collate_images, pin_memory=device.type == "cuda")
    else:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                            collate_fn=collate_images, pin_memory=device.type == "cuda")
    for batch in loader:
        yield from batch["errors"]
        if not len(batch["index"]):
            continue
        images = batch["image"].to(device, non_blocking=True).float().div_(255)
        images = images.contiguous(memory_format=torch.channels_last)  # models for inference are channels_last
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            if groups is not None:
                probs = model.predict_group(images, chunk_size=batch_size, refinement=refinement)[:, 0].float()
            else:
                probs = model.predict(images)[:, 0].float()
        for i, index in enumerate(batch["index"].tolist()):
            p = probs[i]
            if original_size:
                h, w = batch["size"][i].tolist()
                p = F.interpolate(p[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            yield index, p.cpu()
