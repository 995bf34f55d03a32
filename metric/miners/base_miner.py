"""Base class of the triplet miners: run without gradient, return index triplets (never a B×B×B mask)."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from metric._checks import check_labelled_embeddings, check_same_size, check_shape
from metric.distances.base_distance import BaseDistance


class TripletIndices(NamedTuple):
    """Indices into a batch, each a LongTensor of shape (T,): anchor, positive, negative."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor

    def __len__(self) -> int:  # number of triplets, not of fields
        return int(self.anchor.shape[0])

    @staticmethod
    def empty(device: torch.device | str = "cpu") -> "TripletIndices":
        e = torch.empty(0, dtype=torch.long, device=device)
        return TripletIndices(e, e.clone(), e.clone())


def check_triplet_indices(triplets: TripletIndices, num_rows: int) -> TripletIndices:
    """``triplets`` as :class:`TripletIndices` of int64 tensors after checking they are three equally long (T,) integer
    tensors (a :class:`TripletIndices` or any (anchor, positive, negative) tuple, e.g. pytorch-metric-learning's
    ``indices_tuple``) of row indices in [0, ``num_rows``): an index past the end could otherwise read another
    pair's distance, a negative one wrap around, and uint8 indices would select rows as a mask (int8/int16 cannot
    index at all)."""
    if not isinstance(triplets, TripletIndices):  # its len() counts triplets, a plain tuple's its fields
        if not isinstance(triplets, (tuple, list)) or len(triplets) != 3:
            raise TypeError("triplets must be TripletIndices or an (anchor, positive, negative) tuple of tensors, got "
                            f"{type(triplets).__name__}" + (f" of length {len(triplets)}"
                                                            if isinstance(triplets, (tuple, list)) else ""))
        triplets = TripletIndices(*triplets)
    t = check_shape(triplets.anchor, ["T"], "triplets.anchor")["T"]
    for name, indices in zip(triplets._fields, triplets):
        check_same_size(t, check_shape(indices, ["T"], f"triplets.{name}")["T"], f"triplets.anchor and triplets.{name}")
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise TypeError(f"triplets.{name} must hold integer row indices, got {indices.dtype}")
    if t:
        bounds = torch.stack([torch.stack(torch.aminmax(indices)).long() for indices in triplets]).tolist()  # one sync
        for name, (low, high) in zip(triplets._fields, bounds):
            if low < 0 or high >= num_rows:
                raise ValueError(f"triplets.{name} must index the {num_rows} rows of the batch, got values in "
                                 f"[{low}, {high}]")
    return TripletIndices(*(indices.long() for indices in triplets))


def positive_negative_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) labels → (B, B) boolean masks: same label but not itself, and different label."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    itself = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~itself, ~same


def check_mining_inputs(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    """Embeddings (N, D), finite floats, and integer labels (N,) on their device."""
    check_labelled_embeddings(embeddings, labels)


class BaseTripletMiner(nn.Module):
    """``forward(embeddings (N, D), labels (N,)) → TripletIndices``; subclasses write ``mine``."""

    def __init__(self, distance: Optional[BaseDistance] = None) -> None:
        super().__init__()
        if distance is None:
            from metric.distances.euclidean import EuclideanDistance

            distance = EuclideanDistance()
        self.distance = distance

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        check_mining_inputs(embeddings, labels)
        return self.mine(embeddings.detach(), labels)
