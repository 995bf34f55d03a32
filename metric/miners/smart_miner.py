"""Smart mining (Harwood et al., ICCV 2017): triplets mined over the whole training set through a nearest-neighbour
graph index of its embeddings, refreshed periodically."""
from __future__ import annotations

from typing import Literal, Optional

import numpy as np
import torch

from metric._checks import check_count, is_integer, whole_number
from metric.miners.adaptive_controller import AdaptiveHardnessController
from metric.miners.base_miner import TripletIndices
from metric.retrieval.faiss_backend import (ArrayLike, LabelsLike, as_float32_rows, as_int64_labels, as_tensor,
                                            import_faiss)


class SmartMiner:
    """Mines (anchor, positive, negative) DATASET indices from a faiss index of the whole training set.

    Call :meth:`update` with the embeddings of every training sample (e.g. once per epoch), then :meth:`mine` with
    anchor indices. For each anchor, among its ``num_neighbours`` nearest other samples (Euclidean distance d; ties
    in the order the index returns them, by smaller index for ``"flat"``; the anchor is never among them, even
    when more than ``num_neighbours`` exact duplicates of it exist):
      - the positive is the nearest sample of its class;
      - the negative is the nearest sample of another class with ``d(a, n) > d(a, p) + δ``, where δ is the
        controller's offset (0 without a controller: the paper's rule, a negative just beyond the positive).
    Fallbacks, counted in :attr:`last_stats`: an anchor with no positive in its neighbour list gets a uniformly
    random other sample of its class (its d(a, p) is then computed exactly); an anchor with no qualifying
    negative in the list gets a uniformly random sample of another class (with N ≫ num_neighbours almost always
    outside the list, hence farther than every listed sample, though not guaranteed to satisfy the rule). Anchors
    that admit no triplet at all (the only sample of their class, or a training set of one class) are skipped.
    Many fallbacks mean the list is too short: raise ``num_neighbours``.

    Index: ``"hnsw"`` is faiss's HNSW graph (``IndexHNSWFlat``, ``hnsw_m`` links per node, ``ef_construction``
    and ``ef_search`` beam widths; defaults to 2·(num_neighbours + 1)), approximate and — faiss builds it with
    several threads — not bit-reproducible; ``"flat"`` is exact brute force (small sets, tests). Both run on CPU.
    """

    def __init__(
        self,
        num_neighbours: int = 32,
        index: Literal["hnsw", "flat"] = "hnsw",
        hnsw_m: int = 32,
        ef_search: Optional[int] = None,
        ef_construction: int = 40,
        controller: Optional[AdaptiveHardnessController] = None,
        seed: int = 0,
    ) -> None:
        check_count(num_neighbours, 1, "num_neighbours")
        if index not in ("hnsw", "flat"):
            raise ValueError(f"index must be 'hnsw' or 'flat', got '{index}'")
        ef_search = 2 * (num_neighbours + 1) if ef_search is None else ef_search
        if not is_integer(ef_search) or ef_search < num_neighbours + 1:
            raise ValueError(f"ef_search must be >= num_neighbours + 1 = {num_neighbours + 1}, got {ef_search}")
        if not (is_integer(hnsw_m) and is_integer(ef_construction)) or hnsw_m < 2 or ef_construction < 1:
            raise ValueError(f"hnsw_m must be >= 2 and ef_construction >= 1, got {hnsw_m} and {ef_construction}")
        # faiss takes no numpy integers
        self.num_neighbours = int(num_neighbours)
        self.index_type = index
        self.hnsw_m = int(hnsw_m)
        self.ef_search = int(ef_search)
        self.ef_construction = int(ef_construction)
        self.controller = controller
        self.generator = torch.Generator().manual_seed(whole_number("seed", seed))
        self.last_stats: dict[str, int] = {}
        self._index = None

    @property
    def offset(self) -> float:
        """δ of the negative rule: the controller's current offset, or 0."""
        return 0.0 if self.controller is None else float(self.controller.offset)

    @property
    def num_samples(self) -> int:
        """Size of the indexed training set (0 before the first :meth:`update`)."""
        return 0 if self._index is None else int(self._codes.shape[0])

    def update(self, embeddings: ArrayLike, labels: LabelsLike) -> None:
        """(Re)build the index from ``embeddings (N, D)`` of the whole training set and their ``labels (N,)``;
        row i is dataset index i."""
        x = as_float32_rows(embeddings, "embeddings")
        y = as_int64_labels(labels, x.shape[0])
        if x.shape[0] < 2:
            raise ValueError(f"smart mining needs at least 2 samples, got {x.shape[0]}")
        faiss = import_faiss()
        if self.index_type == "hnsw":
            index = faiss.IndexHNSWFlat(x.shape[1], self.hnsw_m)
            index.hnsw.efConstruction = self.ef_construction
            index.add(x)
            index.hnsw.efSearch = self.ef_search
        else:
            index = faiss.IndexFlatL2(x.shape[1])
            index.add(x)
        _, codes = np.unique(y, return_inverse=True)
        self._codes = codes.reshape(-1)
        self._counts = np.bincount(self._codes)
        self._starts = np.cumsum(self._counts) - self._counts
        self._order = np.argsort(self._codes, kind="stable")  # dataset indices grouped by class
        self._position = np.empty_like(self._order)
        self._position[self._order] = np.arange(self._order.size)
        self._index = index

    def _uniform(self, count: int, bounds: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """``count`` integers, entry i uniform in [0, bounds[i])."""
        u = torch.rand(count, generator=generator, dtype=torch.float64).numpy()
        return np.minimum((u * bounds).astype(np.int64), bounds - 1)

    def _random_positives(self, anchors: np.ndarray, generator: torch.Generator) -> np.ndarray:
        c = self._codes[anchors]
        draw = self._uniform(anchors.size, self._counts[c] - 1, generator)
        draw += draw >= self._position[anchors] - self._starts[c]  # skip the anchor itself
        return self._order[self._starts[c] + draw]

    def _random_negatives(self, anchors: np.ndarray, generator: torch.Generator) -> np.ndarray:
        c = self._codes[anchors]
        draw = self._uniform(anchors.size, self._codes.size - self._counts[c], generator)
        draw += np.where(draw >= self._starts[c], self._counts[c], 0)  # skip the anchor's class block
        return self._order[draw]

    @torch.no_grad()
    def mine(self, anchor_ids: ArrayLike, generator: Optional[torch.Generator] = None) -> TripletIndices:
        """``anchor_ids (A,)`` dataset indices → :class:`TripletIndices` of dataset indices (CPU), one triplet per
        anchor that admits one, in the order given. Fallback draws use ``generator`` (default: the miner's own,
        seeded at construction)."""
        if self._index is None:
            raise RuntimeError("SmartMiner.mine() needs an index: call update(embeddings, labels) first")
        ids = as_tensor(anchor_ids, "anchor_ids")
        if ids.dim() != 1 or ids.is_floating_point() or ids.dtype == torch.bool:  # a mask would read as ids 0 and 1
            raise ValueError(f"anchor_ids must be a 1-D integer array, got shape {tuple(ids.shape)} ({ids.dtype})")
        ids = ids.to("cpu", torch.int64).numpy()
        n = self._codes.size
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(
                f"anchor_ids must be dataset indices in [0, {n}), got values in [{ids.min()}, {ids.max()}]")
        generator = self.generator if generator is None else generator
        eligible = (self._counts[self._codes[ids]] >= 2) & (self._counts.size >= 2)
        anchors = ids[eligible]
        self.last_stats = {"anchors": int(ids.size), "skipped": int((~eligible).sum())}
        if anchors.size == 0:
            self.last_stats.update(positive_fallbacks=0, negative_fallbacks=0)
            return TripletIndices.empty()
        queries = self._index.reconstruct_batch(anchors)
        squared, neighbours = self._index.search(queries, min(self.num_neighbours + 1, n))
        distance = np.sqrt(np.maximum(squared, 0.0))
        listed = (neighbours >= 0) & (neighbours != anchors[:, None])
        # The anchor is missing from its results when more than num_neighbours samples tie with it (duplicates):
        # keep its first num_neighbours others only.
        listed &= np.cumsum(listed, axis=1) <= self.num_neighbours
        same = self._codes[np.maximum(neighbours, 0)] == self._codes[anchors][:, None]
        rows = np.arange(anchors.size)

        positive_mask = listed & same
        first = positive_mask.argmax(axis=1)
        positive, to_positive = neighbours[rows, first], distance[rows, first]
        missing = ~positive_mask.any(axis=1)
        if missing.any():
            positive[missing] = self._random_positives(anchors[missing], generator)
            gap = queries[missing] - self._index.reconstruct_batch(positive[missing])
            to_positive[missing] = np.linalg.norm(gap, axis=1)

        negative_mask = listed & ~same & (distance > to_positive[:, None] + self.offset)
        first = negative_mask.argmax(axis=1)
        negative = neighbours[rows, first]
        no_negative = ~negative_mask.any(axis=1)
        negative[no_negative] = self._random_negatives(anchors[no_negative], generator)

        self.last_stats.update(positive_fallbacks=int(missing.sum()), negative_fallbacks=int(no_negative.sum()))
        return TripletIndices(*(torch.from_numpy(np.ascontiguousarray(t)) for t in (anchors, positive, negative)))
