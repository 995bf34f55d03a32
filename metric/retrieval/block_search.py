"""Self-excluding nearest-neighbour lists from blocks of distances: one matrix product per chunk of queries, then
a threshold estimated on a sample of the references leaves ~1.5 × depth candidates per query to sort, instead of
a k-selection over all N distances (faiss's cost for a depth of ~1,000 neighbours)."""
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
    references are held in order of increasing norm, cut into ``norm_bins`` ranges, each compared with one bound
    per query. ``sample_stride``: each query's candidate threshold is read from its scores to one reference in
    ``sample_stride`` (a seeded sample). Neither changes the result, only how many candidates get scored and sorted.
    """

    def __init__(
        self, embeddings: np.ndarray, metric: Metric = "l2", sample_stride: int = 16, norm_bins: int = 512
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
        self._references = np.ascontiguousarray((-2 if metric == "l2" else -1) * x[self._order])
        self._reference_norms = self._query_norms[self._order]
        self._bins = np.unique(np.linspace(0, self.size, (norm_bins if metric == "l2" else 1) + 1).astype(int))
        sample = np.random.default_rng(0).permutation(self.size)[: math.ceil(self.size / sample_stride)]
        self._sample = np.sort(sample)
        self._sample_references = torch.from_numpy(self._references[self._sample])
        self._sample_stride = sample_stride
        # Keys pack (query row, score, index) in 64 bits: index in the low `_index_bits`, then 32 score bits.
        self._index_bits = max(1, (self.size - 1).bit_length())
        self._products = np.empty(0, np.float32)
        self._flags = np.empty((0, 0), bool)
        self._workers = max(1, torch.get_num_threads())
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

        Memory: an N × rows block of float32 products (kept for the next chunks, which reuse it when no larger),
        flags for one norm range per worker, and the candidates (~1.5 × depth per query). The matrix products run
        on torch's threads, the comparisons on the object's worker threads (numpy releases the GIL)."""
        rows = ids.size
        if rows << self._index_bits > 1 << 32:
            raise ValueError(f"a chunk holds at most 2^31 products (queries × N), got {rows} × {self.size}")
        workers = min(rows, self._workers)
        if self._products.size < self.size * rows:
            self._products = np.empty(self.size * rows, np.float32)
            self._flags = np.empty((self._workers, int(np.diff(self._bins).max()) * rows), bool)
        products = self._products[: self.size * rows].reshape(self.size, rows)
        queries = torch.from_numpy(self._queries[ids])
        torch.mm(torch.from_numpy(self._references), queries.T, out=torch.from_numpy(products))
        products[self._block_row[ids], np.arange(rows)] = np.inf  # self-exclusion by index, not by score
        sample_products = torch.mm(queries, self._sample_references.T).numpy()
        by_rows = [slice(a, b) for a, b in pairwise(np.linspace(0, rows, workers + 1).astype(int))]
        threshold = np.concatenate(
            list(self._pool.map(lambda p: self._threshold(ids[p], sample_products[p], depth[p]), by_rows))
        )
        bound = self._bounds(ids, threshold)
        bin_ranges = list(pairwise(np.linspace(0, self._bins.size - 1, workers + 1).astype(int)))
        found = list(
            self._pool.map(
                lambda w: self._candidates(bin_ranges[w], ids, products, self._flags[w], bound, threshold),
                range(workers),
            )
        )
        keys = np.concatenate([keys for keys, _ in found])
        keys = self._complete(ids, products, depth, keys, sum(counts for _, counts in found))
        keys.sort()  # by query row, then score, then index
        starts = np.searchsorted(keys, np.arange(rows + 1, dtype=np.uint64) << np.uint64(32 + self._index_bits))
        taken = starts[:-1, None] + np.arange(int(depth.max()))
        past = taken >= starts[1:, None]
        chosen = keys[np.minimum(taken, keys.size - 1)]
        ranked = float_from_ordered_bits((chosen >> np.uint64(self._index_bits)).astype(np.uint32))
        indices = (chosen & np.uint64((1 << self._index_bits) - 1)).astype(np.int64)
        ranked[past], indices[past] = np.inf, self.size
        return NearestLists(ranked, indices, self._tolerance[ids])

    def _keys(self, row: np.ndarray, scores: np.ndarray, block_row: np.ndarray) -> np.ndarray:
        """One uint64 per (query row, score, reference), ordered like those triples: query row, score bits (mapped
        so that unsigned order is float order) and reference index, packed from the high bits down."""
        high = (row.astype(np.uint64) << np.uint64(32)) | ordered_bits(scores)
        return (high << np.uint64(self._index_bits)) | self._order[block_row].astype(np.uint64)

    def _scores(self, ids: np.ndarray, block_rows: np.ndarray, products: np.ndarray) -> np.ndarray:
        """Scores of queries ``ids`` against references at ``block_rows`` (broadcast together) from their
        ``products``: for "l2", (‖q‖² + ‖x‖²) + (−2 q·x) clamped to 0, as faiss rounds it."""
        if self.metric != "l2":
            return products
        scores = self._query_norms[ids] + self._reference_norms[block_rows]
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
        sample_scores = self._scores(ids[:, None], self._sample[None, :], sample_products)
        sample_scores.partition(rank - 1, axis=1)  # in place: the products are this chunk's own
        return sample_scores[:, rank - 1].copy()

    def _bounds(self, ids: np.ndarray, threshold: np.ndarray) -> np.ndarray:
        """(bins, rows) float32: in each norm range, a product above its query's bound scores above the threshold.

        For "l2", score ≤ t implies −2 q·x ≤ t − ‖q‖² − ‖x‖² + rounding, and ‖x‖² ≥ the range's smallest."""
        if self.metric != "l2":
            return threshold[None, :]
        query_norms = self._query_norms[ids].astype(np.float64)[None, :]
        lowest = self._reference_norms[self._bins[:-1]].astype(np.float64)[:, None]
        highest = self._reference_norms[self._bins[1:] - 1].astype(np.float64)[:, None]
        t = threshold.astype(np.float64)[None, :]
        with np.errstate(invalid="ignore"):  # inf thresholds
            rounding = 4 * UNIT_ROUNDOFF * (query_norms + highest + np.abs(t))
            bound = np.nextafter((t - query_norms - lowest + rounding).astype(np.float32), np.float32(np.inf))
        bound[:, np.isinf(threshold)] = np.inf
        return bound

    def _candidates(
        self,
        bins: tuple[int, int],
        ids: np.ndarray,
        products: np.ndarray,
        scratch: np.ndarray,
        bound: np.ndarray,
        threshold: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keys (see :meth:`_keys`) of every pair scored at most its query's threshold among the block rows of norm
        ranges ``bins[0]`` to ``bins[1]``, and how many each query row has there. ``scratch``: flags of one range."""
        flagged = []
        for b in range(*bins):
            start, stop = self._bins[b], self._bins[b + 1]
            # One norm range at a time: its flags stay in cache between the comparison and the search for them.
            flags = scratch[: (stop - start) * ids.size].reshape(stop - start, ids.size)
            np.less_equal(products[start:stop], bound[b], out=flags)
            flagged.append(np.flatnonzero(flags) + start * ids.size)
        flat = np.concatenate(flagged)
        block_row, row = np.divmod(flat, ids.size)
        scores = self._scores(ids[row], block_row, products.ravel()[flat])
        keep = scores <= threshold[row]
        counts = np.bincount(row, weights=keep, minlength=ids.size)
        return self._keys(row[keep], scores[keep], block_row[keep]), counts

    def _complete(
        self, ids: np.ndarray, products: np.ndarray, depth: np.ndarray, keys: np.ndarray, counts: np.ndarray
    ) -> np.ndarray:
        """The candidates' keys, where a query row with fewer candidates than its depth (the sample put its
        threshold below its depth-th score: rare) gets all references up to its exact depth-th score instead."""
        short = np.flatnonzero(counts < depth)
        if short.size == 0:
            return keys
        keys = keys[~np.isin(keys >> np.uint64(32 + self._index_bits), short)]
        redone = [keys]
        for i in short:
            scores = self._scores(ids[i], np.arange(self.size), products[:, i])
            found = np.flatnonzero(scores <= np.partition(scores, depth[i] - 1)[depth[i] - 1])
            redone.append(self._keys(np.full(found.size, i), scores[found], found))
        return np.concatenate(redone)
