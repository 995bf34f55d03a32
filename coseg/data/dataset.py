"""A torch Dataset of co-segmentation samples, decoded once into memory."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch.utils.data import Dataset

from coseg.data.cache import ImageCache, read_or_substitute
from coseg.data.io import printable
from coseg.data.layouts import Sample


class CosegDataset(Dataset):
    """Samples resized to ``image_size``; unreadable ones are left out (listed in ``cache.skipped``).

    Item ``i`` is a dict: ``image`` uint8 (3, S, S) RGB, ``mask`` uint8 (S, S) 0/1 (only for samples with a mask),
    ``group`` int id (index into ``groups``), ``index`` int (= i, into ``samples``) and ``size`` int64 (2,) = the
    original (H, W). Batches of samples with and without masks do not collate: use ``Scan.labelled`` to train.

    A sample that can no longer be read (its disk-cache file and its source both gone or damaged since ``load``):
    with ``substitute`` (training) the item is that of another readable sample of its group, with ``unreadable`` =
    the failed file and ``unreadable_problem`` = why (both "" on every other item), so that batches keep their
    shape and every process its number of batches; with no readable sample left in the group, ``ValueError``
    naming the file. Without ``substitute`` the item is ``{"index": i, "error": message naming the file}``, which
    :func:`coseg.inference.predict_dataset` reports instead of predicting.
    """

    def __init__(self, samples: Sequence[Sample], image_size: int, cache: Optional[ImageCache] = None,
                 substitute: bool = False) -> None:
        self.cache = cache if cache is not None else ImageCache(image_size, progress=False)
        if self.cache.image_size != image_size:
            raise ValueError(f"cache holds {self.cache.image_size}px images, dataset wants {image_size}px")
        self.image_size = image_size
        self.samples: list[Sample] = self.cache.load(samples)
        if not self.samples:
            files = {f for s in samples for f in (s.image, s.mask)}
            first = next((f"{printable(f)}: {why}" for f, why in self.cache.skipped if f in files), "no samples given")
            raise ValueError(f"none of the {len(samples)} samples could be read; first problem: {first}")
        self.groups: list[str] = sorted({s.group for s in self.samples})
        index = {g: i for i, g in enumerate(self.groups)}
        self._group_ids = torch.tensor([index[s.group] for s in self.samples], dtype=torch.long)
        self.substitute = substitute

    @property
    def group_ids(self) -> torch.Tensor:
        """(N,) int64 group id of each sample: the labels for a group-aware batch sampler."""
        return self._group_ids

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        group = int(self._group_ids[i])
        found = read_or_substitute(lambda j: self.cache[self.samples[j]], i, self._group_ids, self.substitute,
                                   f"group '{printable(self.groups[group])}'")
        if isinstance(found, str):
            return {"index": i, "error": found}
        decoded, marks = found
        item: dict[str, Any] = {
            "image": torch.from_numpy(decoded.image).permute(2, 0, 1).contiguous(),
            "group": group,
            "index": i,
            "size": torch.tensor(decoded.size, dtype=torch.long),
            **marks,
        }
        if decoded.mask is not None:
            item["mask"] = torch.from_numpy(decoded.mask)
        return item
