"""Self-excluding nearest-neighbour lists from blocks of distances: matrix products of a chunk of queries with one
range of references at a time, each compared with a threshold estimated on a sample of the references, leave
~1.5 × depth candidates per query to sort, instead of a k-selection over all N distances (faiss's cost for a depth
of ~1,000 neighbours)."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import NamedTuple

import numpy as np
import torch

from metric.retrieval.faiss_backend import import_faiss, l2_normalized
from metric.retrieval.knn import Metric, check_metric

# Unit roundoff of float32.
UNIT_ROUNDOFF = 2.0**-24


def ordered_bits(values: np.ndarray) -> np.ndarray:
    """float32 → uint32 with the same order (−0.0 counts as +0.0, as in float comparisons)."""
    bits = (values + np.float32(0)).view(np.uint32)
    return np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))


def float_from_ordered_bits(bits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`ordered_bits`."""
    return np.where(bits >> 31, bits & np.uint32((1 << 31) - 1), ~bits).view(np.float32)


def faiss_squared_norms(x: np.ndarray) -> np.ndarray:
    """(N,) float32 ‖x_i‖², rounded exactly as faiss rounds the norms of its L2 searches."""
    faiss = import_faiss()
    norms = np.empty(x.shape[0], np.float32)
    faiss.fvec_norms_L2sqr(faiss.swig_ptr(norms), faiss.swig_ptr(x), x.shape[1], x.shape[0])
    return norms


def flagged(flags: np.ndarray) -> np.ndarray:
    """``np.flatnonzero`` of a sparse 1-D bool array whose length is a multiple of 8, faster: it first finds the
    non-zero 8-byte words, then the set flags inside them."""
    words = np.flatnonzero(flags.view(np.uint64))
    within = np.flatnonzero(flags.reshape(-1, 8)[words])
    return (words[within >> 3] << 3) | (within & 7)


class NearestLists(NamedTuple):
    """One chunk of queries: their nearest others, best first, ties by smaller index."""

    scores: np.ndarray  # (rows, width) float32 ascending; row i holds its depth[i] nearest (N past its candidates)
    indices: np.ndarray  # (rows, width) int64 reference rows (N, with score inf, past a row's candidates)
    tolerance: np.ndarray  # (rows,) float64: bound on |score − faiss's distance| (see BlockSearch)


class BlockSearch:
    """Nearest neighbours of rows of ``embeddings (N, D)`` (float32 host array) among all its other rows.

    Scores are ascending and computed as faiss computes its exhaustive-search distances: ``"l2"`` → ‖q‖² + ‖x‖²
    (faiss's norms, summed first) − 2 q·x (a float32 matrix product), negatives clamped to 0; ``"ip"`` → −q·x;
    ``"cosine"`` → −q·x of L2-normalised rows. When the matrix product rounds each dot product as faiss's BLAS
    does (it does on x86 with MKL or OpenBLAS, whose kernels sum the D products in order), the scores are exactly
    faiss's. Otherwise ``tolerance`` bounds, per query, how far a score can be from faiss's value of the same pair
    (worst-case rounding of both, faiss's pair-by-pair path for small searches included), so that neighbours
    scored more than twice the tolerance apart are ordered as faiss orders them. Exact ties go to the smaller
    index (as faiss orders distances; it lists tied similarities the other way round).

    Candidates are picked from the products alone (one comparison per product, no score computed): for "l2" the
    references are held in order of increasing norm and cut into ranges of ``block_products`` / (chunk size)
    references, each compared with one bound per query right after its matrix product, while it is in cache.
    ``sample_stride``: each query's candidate threshold is read from its scores to one reference in
    ``sample_stride`` (a seeded sample). Neither changes the result, only how many candidates get scored and sorted.
    """

    def __init__(
        self, embeddings: np.ndarray, metric: Metric = "l2", sample_stride: int = 16, block_products: int = 1 << 18
    ) -> None:
        check_metric(metric)
        x = l2_normalized(embeddings) if metric == "cosine" else np.ascontiguousarray(embeddings, np.float32)
        self.size, dim = x.shape
        self.metric = metric
        self._queries = x
        self._query_norms = faiss_squared_norms(x)
        largest = float(self._query_norms.max(initial=0.0))
        if metric == "l2":
            # Each of ours and faiss's (either path) is within (2D + 4)u(‖q‖² + ‖x‖²) of the exact distance.
            self._tolerance = (4 * dim + 8) * UNIT_ROUNDOFF * (self._query_norms.astype(np.float64) + largest)
        else:
            # Each inner product is within γ_D ‖q‖ ‖x‖ of the exact one.
            self._tolerance = 2 * (dim + 2) * UNIT_ROUNDOFF * np.sqrt(self._query_norms * np.float64(largest))
        self._tolerance *= 1.01  # slack for the bound's second-order terms
        # Block row j is reference order[j]. Products are −2 q·x for "l2" (exactly −2 × faiss's q·x: scaling by a
        # power of two rounds alike) and −q·x otherwise.
        self._order = np.argsort(self._query_norms, kind="stable") if metric == "l2" else np.arange(self.size)
        self._block_row = np.empty(self.size, np.int64)
        self._block_row[self._order] = np.arange(self.size)
        self._references = torch.from_numpy((-2 if metric == "l2" else -1) * x[self._order])
        self._reference_norms = self._query_norms[self._order]
        sample = np.random.default_rng(0).permutation(self.size)[: math.ceil(self.size / sample_stride)]
        self._sample = np.sort(sample)
        self._sample_references = self._references[self._sample]
        self._sample_stride = sample_stride
        self._block_products = block_products
        # Keys pack (query row, score, index) in 64 bits: index in the low `_index_bits`, then 32 score bits.
        self._index_bits = max(1, (self.size - 1).bit_length())
        self._workers = max(1, torch.get_num_threads())
        # Per worker: one block of products and its flags (whole 8-byte words, see `flagged`).
        self._products = np.empty((self._workers, 0), np.float32)
        self._flags = np.zeros((self._workers, 0), bool)
        self._pool = ThreadPoolExecutor(self._workers)

    def __enter__(self) -> BlockSearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker threads (also done on leaving a ``with`` block)."""
        self._pool.shutdown()

    def nearest(self, ids: np.ndarray, depth: np.ndarray) -> NearestLists:
        """The ``depth[i]`` (1 ≤ depth ≤ N − 1) nearest others of query row ``ids[i]``, for a chunk of at most
        2³¹ / N queries.

        Memory: one block of about ``block_products`` products per worker thread (a chunk's N × rows products are
        never held at once), and the candidates (~1.5 × depth per query). The matrix products run on torch's
        threads, the comparisons on the object's worker threads (numpy releases the GIL)."""
        rows = ids.size
        if rows << self._index_bits > 1 << 32:
            raise ValueError(f"a chunk holds at most 2^31 products (queries × N), got {rows} × {self.size}")
        sample_products = torch.mm(torch.from_numpy(self._queries[ids]), self._sample_references.T).numpy()
        workers = min(rows, self._workers)
        by_rows = [slice(a, b) for a, b in pairwise(np.linspace(0, rows, workers + 1).astype(int))]
        threshold = np.concatenate(
            list(self._pool.map(lambda p: self._threshold(ids[p], sample_products[p], depth[p]), by_rows))
        )
        keys = self._pass(ids, threshold)
        keys.sort()  # by query row, then score, then index
        row_starts = np.arange(rows + 1, dtype=np.uint64) << np.uint64(32 + self._index_bits)
        starts = np.searchsorted(keys, row_starts)
        short = np.flatnonzero(np.diff(starts) < depth)
        if short.size:
            keys = self._complete(ids, short, keys)
            starts = np.searchsorted(keys, row_starts)
        taken = starts[:-1, None] + np.arange(int(depth.max()))
        past = taken >= starts[1:, None]
        chosen = keys[np.minimum(taken, keys.size - 1)]
        ranked = self._unpacked_scores((chosen >> np.uint64(self._index_bits)).astype(np.uint32))
        indices = (chosen & np.uint64((1 << self._index_bits) - 1)).astype(np.int64)
        ranked[past], indices[past] = np.inf, self.size
        return NearestLists(ranked, indices, self._tolerance[ids])

    def _pass(self, ids: np.ndarray, threshold: np.ndarray) -> np.ndarray:
        """Keys (see :meth:`_keys`) of every other reference scored at most its query's threshold, unsorted, from
        one pass over ranges of references (split between the worker threads)."""
        rows = ids.size
        # Columns: a power of two, so that a flat index splits into (block row, column) by shifts, and at least two
        # (one column would make the BLAS take its matrix-vector path, which rounds differently). Padding columns
        # repeat queries and flag nothing.
        shift = max(1, (rows - 1).bit_length())
        columns = 1 << shift
        queries_t = torch.from_numpy(self._queries[np.resize(ids, columns)]).T
        ranges = math.ceil(self.size * columns / self._block_products)
        bins = np.unique(np.linspace(0, self.size, ranges + 1).astype(int))
        bound = np.pad(self._bounds(ids, threshold, bins), ((0, 0), (0, columns - rows)), constant_values=-np.inf)
        block = int(np.diff(bins).max()) * columns
        if self._products.shape[1] < block:
            self._products = np.empty((self._workers, block), np.float32)
            self._flags = np.zeros((self._workers, block + 8), bool)

        def flag(worker: int, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
            """Flat indices (block row × columns + column) and products of the flagged pairs of ranges
            ``first`` to ``last``."""
            flats, values = [], []
            for b in range(first, last):
                start, stop = bins[b], bins[b + 1]
                products = self._products[worker, : (stop - start) * columns].reshape(stop - start, columns)
                torch.mm(self._references[start:stop], queries_t, out=torch.from_numpy(products))
                flags = self._flags[worker, : -(-products.size // 8) * 8]
                flags[products.size :] = False
                np.less_equal(products, bound[b], out=flags[: products.size].reshape(products.shape))
                flat = flagged(flags)
                values.append(products.ravel()[flat])
                flats.append(flat + start * columns)
            return np.concatenate(flats), np.concatenate(values)

        # fewer ranges than workers (small sets): drop the empty shares
        split = np.unique(np.linspace(0, bins.size - 1, min(rows, self._workers) + 1).astype(int))
        if split.size == 2:
            found = [flag(0, 0, bins.size - 1)]
        else:
            found = list(self._pool.map(flag, range(split.size - 1), split[:-1], split[1:]))
        flat = np.concatenate([f for f, _ in found])
        row, block_row = flat & (columns - 1), flat >> shift
        scores = self._scores(ids, row, block_row, np.concatenate([v for _, v in found]))
        keep = scores <= threshold[row]
        keep &= block_row != self._block_row[ids][row]  # each query's own row: left out by index, not by score
        return self._keys(row, scores, block_row)[keep]

    def _keys(self, row: np.ndarray, scores: np.ndarray, block_row: np.ndarray) -> np.ndarray:
        """One uint64 per (query row, score, reference), ordered like those triples: query row, score bits (mapped
        so that unsigned order is float order) and reference index, packed from the high bits down."""
        # "l2" scores are ≥ 0 (or −0.0, which clearing the sign bit makes +0.0): their bits are in float order.
        bits = scores.view(np.uint32) & np.uint32(0x7FFFFFFF) if self.metric == "l2" else ordered_bits(scores)
        keys = row.astype(np.uint64) << np.uint64(32)
        keys |= bits
        keys <<= np.uint64(self._index_bits)
        keys |= self._order[block_row].view(np.uint64)
        return keys

    def _unpacked_scores(self, bits: np.ndarray) -> np.ndarray:
        """Inverse of the score bits of :meth:`_keys`."""
        return bits.view(np.float32) if self.metric == "l2" else float_from_ordered_bits(bits)

    def _scores(self, ids: np.ndarray, row: np.ndarray, block_row: np.ndarray, products: np.ndarray) -> np.ndarray:
        """Scores of queries ``ids[row]`` against references at ``block_row`` (broadcast together) from their
        ``products``: for "l2", (‖q‖² + ‖x‖²) + (−2 q·x) clamped to 0, as faiss rounds it."""
        if self.metric != "l2":
            return products
        scores = self._query_norms[ids][row] + self._reference_norms[block_row]
        scores += products
        return np.maximum(scores, 0, out=scores)

    def _threshold(self, ids: np.ndarray, sample_products: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Per query, a score below which about depth + 3√(depth·stride) + 4·stride references lie (depth: the
        chunk's largest): the sample's count below the depth-th score is ~Poisson(depth / stride), so falling short
        happens with probability ~1e-4 per query (and is then handled exactly, see :meth:`_complete`)."""
        expected = depth.max() / self._sample_stride
        # One rank more: the sample may hold the query itself.
        rank = math.ceil(expected + 3 * math.sqrt(expected) + 4) + 1
        if rank > self._sample.size:
            return np.full(ids.size, np.inf, np.float32)
        sample_scores = self._scores(ids, np.arange(ids.size)[:, None], self._sample[None, :], sample_products)
        sample_scores.partition(rank - 1, axis=1)  # in place: the products are this chunk's own
        return sample_scores[:, rank - 1].copy()

    def _bounds(self, ids: np.ndarray, threshold: np.ndarray, bins: np.ndarray) -> np.ndarray:
        """(ranges, rows) float32: in each range ``bins[b]`` to ``bins[b + 1]`` of block rows, a product above its
        query's bound scores above the threshold.

        For "l2", score ≤ t implies −2 q·x ≤ t − ‖q‖² − ‖x‖² + rounding, and ‖x‖² ≥ the range's smallest."""
        if self.metric != "l2":
            return np.broadcast_to(threshold, (bins.size - 1, threshold.size))
        query_norms = self._query_norms[ids].astype(np.float64)[None, :]
        lowest = self._reference_norms[bins[:-1]].astype(np.float64)[:, None]
        highest = self._reference_norms[bins[1:] - 1].astype(np.float64)[:, None]
        t = threshold.astype(np.float64)[None, :]
        with np.errstate(invalid="ignore"):  # inf thresholds
            rounding = 4 * UNIT_ROUNDOFF * (query_norms + highest + np.abs(t))
            bound = np.nextafter((t - query_norms - lowest + rounding).astype(np.float32), np.float32(np.inf))
        bound[:, np.isinf(threshold)] = np.inf
        return bound

    def _complete(self, ids: np.ndarray, short: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Sorted keys, where the query rows ``short`` with fewer candidates than their depth (the sample put their
        threshold below their depth-th score: rare) get the keys of all their N − 1 others (a second pass)."""
        shift = np.uint64(32 + self._index_bits)
        redone = self._pass(ids[short], np.full(short.size, np.inf, np.float32))
        low = redone & ((np.uint64(1) << shift) - np.uint64(1))
        relabelled = low | (short[redone >> shift].astype(np.uint64) << shift)
        keys = np.concatenate([keys[~np.isin(keys >> shift, short)], relabelled])
        keys.sort()
        return keys
