"""A torch Dataset of a retrieval split's images, decoded once into memory (coseg's ``ImageCache``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch.utils.data import Dataset

from apps.retrieval.datasets import Record
from coseg.data.cache import ImageCache, read_or_substitute
from coseg.data.io import printable
from coseg.data.layouts import Sample


def _sample(record: Record) -> Sample:
    # The cache key holds only the file, so one image shared by several splits or labellings is decoded once.
    return Sample(record.path, None, group="")


class RetrievalImageDataset(Dataset):
    """``records`` resized to ``image_size``×``image_size``; unreadable images are left out and listed in
    ``skipped`` as (file, reason).

    Item ``i`` is a dict: ``image`` uint8 (3, S, S) RGB, ``label`` int, ``index`` int (= i, into ``records``), and
    ``super_label`` int when every record has one. Pass a shared ``cache`` to decode each file once across
    datasets (and, with its ``cache_dir``, across runs).

    An image that can no longer be read (its disk-cache file and its source both gone or damaged since decoding):
    with ``substitute`` (training) the item is that of another readable image of its class, with ``unreadable`` =
    the failed file and ``unreadable_problem`` = why (both "" on every other item), so that batches keep their
    classes and every process its number of batches; with no readable image left in the class, ``ValueError``
    naming the file. Without ``substitute`` the item is ``{"index": i, "error": message naming the file}``."""

    def __init__(self, records: Sequence[Record], image_size: int, cache: Optional[ImageCache] = None,
                 substitute: bool = False) -> None:
        self.cache = cache if cache is not None else ImageCache(image_size, progress=False)
        if self.cache.image_size != image_size:
            raise ValueError(f"cache holds {self.cache.image_size}px images, dataset wants {image_size}px")
        if not records:
            raise ValueError("no records given")
        self.image_size = image_size
        self.cache.load([_sample(r) for r in records])
        self.records: list[Record] = [r for r in records if _sample(r) in self.cache]
        reasons = dict(self.cache.skipped)
        self.skipped: list[tuple[Path, str]] = [(r.path, reasons[r.path]) for r in records
                                                if _sample(r) not in self.cache]
        if not self.records:
            raise ValueError(f"none of the {len(records)} images could be read; first problem: "
                             f"{printable(self.skipped[0][0])}: {self.skipped[0][1]}")
        self._labels = torch.tensor([r.label for r in self.records], dtype=torch.long)
        has_super = all(r.super_label is not None for r in self.records)
        self._super_labels = (torch.tensor([r.super_label for r in self.records], dtype=torch.long)
                              if has_super else None)
        self.substitute = substitute

    @property
    def labels(self) -> torch.Tensor:
        """(N,) int64 class label of each kept record: the labels for a batch sampler."""
        return self._labels

    @property
    def super_labels(self) -> Optional[torch.Tensor]:
        """(N,) int64 super-class label of each kept record, or None when the data set has none."""
        return self._super_labels

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        label = int(self._labels[i])
        found = read_or_substitute(lambda j: self.cache[_sample(self.records[j])], i, self._labels,
                                   self.substitute, f"class {label}")
        if isinstance(found, str):
            return {"index": i, "error": found}
        decoded, marks = found
        item: dict[str, Any] = {
            "image": torch.from_numpy(decoded.image).permute(2, 0, 1).contiguous(),
            "label": label,
            "index": i,
            **marks,
        }
        if self._super_labels is not None:
            item["super_label"] = int(self._super_labels[i])
        return item
