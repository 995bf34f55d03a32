"""Self-excluding nearest-neighbour lists from blocks of distances: matrix products of queries with one range of
references at a time, each compared with a threshold estimated on a sample of the references, leave ~1.5 × depth
candidates per query to sort, instead of a k-selection over all N distances (faiss's cost for a depth of ~1,000
neighbours). When every row is a query, each block of products serves both its rows and its columns, so only half
of the N × N products are computed (:meth:`BlockSearch.symmetric`)."""
from __future__ import annotations

import math
from itertools import pairwise
from typing import Iterator, NamedTuple

import numpy as np
import torch

from metric.retrieval.faiss_backend import import_faiss, l2_normalized
from metric.retrieval.knn import Metric, check_metric
from metric.threads import single_threaded_pool

# Unit roundoff of float32.
UNIT_ROUNDOFF = 2.0**-24
# Blocks of products have at least this many rows and columns where the set allows: MKL rounds smaller ones
# (and matrix-vector products) differently from its sequential sum of the D products with fused multiply-adds.
MIN_SIDE = 32
# Sample scores per query held at once while estimating thresholds (16 MiB of float32).
SAMPLE_PRODUCTS = 1 << 22


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


def kth_smallest(values: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """(rows,) the ``rank[i]``-th smallest (1 ≤ rank ≤ width) of each row of ``values (rows, width)``.

    A cut read from every 16th column (a few more than rank / 16 of them below it) leaves ~2.5 × rank values
    per row to sort when the columns are in random order; rows where fewer than rank values pass the cut keep
    them all. The same result as a row-wise partition, several times faster for ranks far below the width."""
    rows, width = values.shape
    head = values[:, ::16]
    if head.shape[1] < 64:
        return np.take_along_axis(np.sort(values, axis=1), rank[:, None] - 1, axis=1)[:, 0]
    expected = rank * (head.shape[1] / width)
    head_rank = np.minimum(head.shape[1], np.ceil(expected + 3 * np.sqrt(expected) + 2).astype(np.int64))
    cut = np.partition(head, int(head_rank.max()) - 1, axis=1)[:, : int(head_rank.max())]
    cut.sort(axis=1)
    passing = values <= np.take_along_axis(cut, head_rank[:, None] - 1, axis=1)
    counts = passing.sum(axis=1)
    passing[counts < rank] = True
    counts = passing.sum(axis=1)
    kept = np.full((rows, int(counts.max())), np.inf, values.dtype)
    starts = np.cumsum(counts) - counts
    flat = np.flatnonzero(passing)
    row = flat // width
    kept.ravel()[row * kept.shape[1] + np.arange(flat.size) - starts[row]] = values.ravel()[flat]
    kept.sort(axis=1)
    return np.take_along_axis(kept, rank[:, None] - 1, axis=1)[:, 0]


def sorted_by_row(keys: np.ndarray, shift: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.sort(keys)`` of uint64 keys whose bits from ``shift`` up hold a row in [0, rows), and the start of each
    row's keys (rows + 1,). Faster than one sort: a radix sort of the row bits groups the keys by row, then each
    row's keys are sorted on their own, in cache."""
    row = (keys >> np.uint64(shift)).astype(np.uint16 if rows <= 1 << 16 else np.uint32)
    keys = keys[np.argsort(row, kind="stable")]
    starts = np.zeros(rows + 1, np.int64)
    np.cumsum(np.bincount(row, minlength=rows), out=starts[1:])
    for start, stop in pairwise(starts.tolist()):
        keys[start:stop].sort()
    return keys, starts


class NearestLists(NamedTuple):
    """One chunk of queries: their nearest others, best first, ties by smaller index."""

    scores: np.ndarray  # (rows, width) float32 ascending; row i holds its depth[i] nearest (N past its candidates)
    indices: np.ndarray  # (rows, width) int64 reference rows (N, with score inf, past a row's candidates)
    tolerance: np.ndarray  # (rows,) float64: bound on |score − faiss's distance| (see BlockSearch)


class BlockSearch:
    """Nearest neighbours of rows of ``embeddings (N, D)`` (float32 host array) among all its other rows.

    Scores are ascending and computed as faiss computes its exhaustive-search distances:
    ``"l2"`` → ‖q‖² + ‖x‖² (faiss's norms, summed first) − 2 q·x (a float32 matrix product), negatives
    clamped to 0; ``"ip"`` → −q·x; ``"cosine"`` → −q·x of L2-normalised rows. torch's BLAS (MKL) rounds
    each dot product of blocks of at least
    :data:`MIN_SIDE` × MIN_SIDE as a sum of the D products in order with fused multiply-adds, whichever operand a
    row is in, so a pair scores the same in :meth:`nearest` and :meth:`symmetric`. faiss's BLAS rounds most pairs
    alike (the faiss-cpu wheel's OpenBLAS: 97-99 % of them, measured), not all: ``tolerance`` bounds, per query,
    how far a score can be from faiss's value of the same pair (worst-case rounding of both, faiss's pair-by-pair
    path for small searches included), so that neighbours scored more than twice the tolerance apart are ordered
    as faiss orders them. Exact ties go to the smaller index (as faiss orders distances; it lists tied
    similarities the other way round).

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
        # The references unscaled, in block order: the other operand of the symmetric pass's products.
        self._sorted = torch.from_numpy(x[self._order] if metric == "l2" else x)
        sample = np.random.default_rng(0).permutation(self.size)[: math.ceil(self.size / sample_stride)]
        self._sample = np.sort(sample)
        self._sample_references = self._references[self._sample]
        self._sample_stride = sample_stride
        self._block_products = block_products
        # The symmetric pass's tiles: a power of two (the BLAS is slower on widths that are no multiple of 16).
        self._tile = max(MIN_SIDE, 1 << (math.isqrt(block_products).bit_length() - 1))
        # Keys pack (query row, score, index) in 64 bits: index in the low `_index_bits`, then 32 score bits.
        self._index_bits = max(1, (self.size - 1).bit_length())
        self._workers = max(1, torch.get_num_threads())
        # Per worker: one block of products and its flags (whole 8-byte words, see `flagged`).
        self._products = np.empty((self._workers, 0), np.float32)
        self._flags = np.zeros((self._workers, 0), bool)
        self._pool = single_threaded_pool(self._workers)

    def __enter__(self) -> BlockSearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker threads (also done on leaving a ``with`` block)."""
        self._pool.shutdown()

    def thresholds(self, ids: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """(rows,) float32 candidate thresholds of query rows ``ids`` for their ``depth`` (≥ 1) nearest others (see
        :meth:`_threshold`), from the sample's scores, :data:`SAMPLE_PRODUCTS` at a time."""
        rows = max(1, SAMPLE_PRODUCTS // self._sample.size)
        parts = [self._sample_thresholds(ids[s : s + rows], depth[s : s + rows]) for s in range(0, ids.size, rows)]
        return np.concatenate(parts or [np.empty(0, np.float32)])

    def nearest(self, ids: np.ndarray, depth: np.ndarray, threshold: np.ndarray | None = None) -> NearestLists:
        """The ``depth[i]`` (1 ≤ depth ≤ N − 1) nearest others of query row ``ids[i]``, for a chunk of at most
        2³¹ / N queries. ``threshold``: the rows' :meth:`thresholds` if already computed.

        Memory: one block of about ``block_products`` products per worker thread (a chunk's N × rows products are
        never held at once), and the candidates (~1.5 × depth per query). The matrix products run on torch's
        threads, the comparisons on the object's worker threads (numpy releases the GIL)."""
        rows = ids.size
        if rows << self._index_bits > 1 << 32:
            raise ValueError(f"a chunk holds at most 2^31 products (queries × N), got {rows} × {self.size}")
        if threshold is None:
            threshold = self._sample_thresholds(ids, depth)
        return self._ranked(ids, depth, self._pass(ids, threshold))

    def symmetric(
        self, depth: np.ndarray, threshold: np.ndarray, budget: int
    ) -> Iterator[tuple[np.ndarray, NearestLists]]:
        """The ``depth`` nearest others of every query (``depth (N,)``, 0 for rows that are no query; ``threshold
        (N,)`` their :meth:`thresholds`), a tile of rows at a time: ``(ids, lists)`` of the tile's queries. Tiles
        whose candidates would exceed ``budget`` bytes are left out (see below): their queries are not yielded.

        Tiles are ranges of block rows (for "l2": of increasing norm). Tile I's products with tile J ≥ I (one
        matrix product) are compared with the bounds of I's rows for J's norms and with those of J's rows for I's
        norms: a pair's score is the same either way round (the same rounded dot product, norms added in either
        order), so each pair is multiplied once. Candidates of later tiles wait until their tile's turn. Memory:
        when they take more than ``budget`` bytes, the last tiles are left out (their waiting candidates dropped,
        none collected for them any more) until half the budget is held; so at most the budget plus one tile row's
        new candidates are held, plus one tile × tile block per worker."""
        bins = self._tile_bins()
        tiles = bins.size - 1
        if int(np.diff(bins).max()) << self._index_bits > 1 << 32:
            raise ValueError(f"{self.size} rows are too many for the symmetric pass")
        block_depth, block_threshold = depth[self._order], threshold[self._order].astype(np.float32)
        block_threshold[block_depth == 0] = -np.inf
        self._reserve(int(np.diff(bins).max()) ** 2)
        pending: list[list[np.ndarray]] = [[] for _ in range(tiles)]
        held, kept = 0, tiles  # bytes of candidates waiting; tiles still collecting them
        for i in range(tiles):
            if i == kept:
                return
            later = np.arange(i, tiles)
            shares = np.array_split(later, min(self._workers, later.size))
            found = list(
                self._pool.map(
                    lambda w: self._tile_row(w, i, shares[w], bins, block_threshold, bins[kept]), range(len(shares))
                )
            )
            for _, others in found:
                for j, keys in others:
                    pending[j].append(keys)
                    held += keys.nbytes
            waiting, pending[i] = pending[i], []
            held -= sum(part.nbytes for part in waiting)
            keys = np.concatenate([own for own, _ in found] + waiting)
            if held > budget:
                while kept > i + 1 and held > budget // 2:
                    kept -= 1
                    held -= sum(part.nbytes for part in pending[kept])
                    pending[kept] = []
            ids, tile_depth = self._order[bins[i] : bins[i + 1]], block_depth[bins[i] : bins[i + 1]]
            queries = np.flatnonzero(tile_depth > 0)
            if queries.size:
                lists = self._ranked(ids, tile_depth, keys)
                yield ids[queries], NearestLists(*(part[queries] for part in lists))

    def _tile_bins(self) -> np.ndarray:
        """Tile boundaries in block rows: tiles of ``_tile`` rows, the last one merged into the one before when it
        would have fewer than :data:`MIN_SIDE` rows."""
        bins = np.append(np.arange(0, self.size, self._tile), self.size)
        return np.delete(bins, -2) if bins.size > 2 and bins[-1] - bins[-2] < MIN_SIDE else bins

    def _reserve(self, block: int) -> None:
        """Per-worker buffers for blocks of ``block`` products."""
        if self._products.shape[1] < block:
            self._products = np.empty((self._workers, block), np.float32)
            self._flags = np.zeros((self._workers, block + 8), bool)

    def _tile_row(
        self, worker: int, i: int, tiles: np.ndarray, bins: np.ndarray, threshold: np.ndarray, collected: int
    ) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
        """Keys of tile ``i``'s rows from its blocks with ``tiles`` (consecutive, all ≥ i), and per other tile of
        the block rows below ``collected``, the keys of its rows from the same blocks (row fields: the row within
        its tile)."""
        first, last = bins[i], bins[i + 1]
        # Bounds of tile i's rows for each of the tiles' norms; of the tiles' rows for tile i's norms.
        norms = self._reference_norms
        own_bounds = self._bounds(norms[first:last], threshold[first:last], bins[tiles[0] : tiles[-1] + 2])
        columns = slice(bins[tiles[0]], bins[tiles[-1] + 1])
        column_bounds = self._bounds(norms[columns], threshold[columns], bins[i : i + 2])[0]
        flats, values = [], []
        for b, j in enumerate(tiles):
            height, width = last - first, bins[j + 1] - bins[j]
            products = self._products[worker, : height * width].reshape(height, width)
            columns_t = self._sorted[bins[j] : bins[j + 1]].T
            torch.mm(self._references[first:last], columns_t, out=torch.from_numpy(products))
            flags = self._flags[worker, : products.size].reshape(height, width)
            if j == i or bins[j] >= collected:
                bound = own_bounds[b][:, None]
            else:
                # Flag a pair that may be a candidate of its row or of its column. One bound per column (the rows'
                # largest, or the column's own): the rows' bounds vary little within a tile, so this flags about
                # as few pairs as a bound per pair would, at the cost of a single comparison.
                offset = bins[j] - columns.start
                bound = np.maximum(own_bounds[b].max(), column_bounds[None, offset : offset + width])
            np.less_equal(products, bound, out=flags)
            flats.append(np.flatnonzero(flags))
            values.append(products.ravel()[flats[-1]])
        counts = [f.size for f in flats]
        row, column = np.divmod(np.concatenate(flats), np.repeat(np.diff(bins)[tiles], counts))
        column += np.repeat(bins[tiles], counts)
        row += first
        scores = self._scores(row, column, np.concatenate(values))
        # Each query's own row (diagonal block) is left out by index, not by score.
        keep = (scores <= threshold[row]) & (row != column)
        own = self._keys(row[keep] - first, scores[keep], column[keep])
        keep = (column >= last) & (column < collected) & (scores <= threshold[column])
        column, row = column[keep], row[keep]
        tile = np.searchsorted(bins, column, side="right") - 1
        keys = self._keys(column - bins[tile], scores[keep], row)
        cuts = np.flatnonzero(np.diff(tile)) + 1
        return own, [(int(tile[c]), part) for c, part in zip(np.append(0, cuts), np.split(keys, cuts)) if part.size]

    def _pass(self, ids: np.ndarray, threshold: np.ndarray) -> np.ndarray:
        """Keys (see :meth:`_keys`) of every other reference scored at most its query's threshold, unsorted, from
        one pass over ranges of references (split between the worker threads)."""
        rows = ids.size
        # Columns: a power of two, so that a flat index splits into (block row, column) by shifts, and at least
        # MIN_SIDE (see there). Padding columns repeat queries and flag nothing.
        shift = max(MIN_SIDE.bit_length() - 1, (rows - 1).bit_length())
        columns = 1 << shift
        queries_t = torch.from_numpy(self._queries[np.resize(ids, columns)]).T
        ranges = math.ceil(self.size * columns / self._block_products)
        bins = np.unique(np.linspace(0, self.size, ranges + 1).astype(int))
        bound = self._bounds(self._query_norms[ids], threshold, bins)
        bound = np.pad(bound, ((0, 0), (0, columns - rows)), constant_values=-np.inf)
        self._reserve(int(np.diff(bins).max()) * columns)

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
        scores = self._scores(self._block_row[ids][row], block_row, np.concatenate([v for _, v in found]))
        keep = scores <= threshold[row]
        keep &= block_row != self._block_row[ids][row]  # each query's own row: left out by index, not by score
        return self._keys(row, scores, block_row)[keep]

    def _ranked(self, ids: np.ndarray, depth: np.ndarray, keys: np.ndarray) -> NearestLists:
        """The lists of query rows ``ids`` from the keys of their candidates (unsorted); rows with fewer candidates
        than their depth are searched again exhaustively (:meth:`_complete`)."""
        rows, shift = ids.size, 32 + self._index_bits
        keys, starts = sorted_by_row(keys, shift, rows)
        short = np.flatnonzero(np.diff(starts) < depth)
        if short.size:
            keys, starts = sorted_by_row(self._complete(ids, short, keys), shift, rows)
        taken = starts[:-1, None] + np.arange(int(depth.max(initial=0)))
        past = taken >= starts[1:, None]
        chosen = keys[np.minimum(taken, keys.size - 1)] if keys.size else np.zeros(taken.shape, np.uint64)
        ranked = self._unpacked_scores((chosen >> np.uint64(self._index_bits)).astype(np.uint32))
        indices = (chosen & np.uint64((1 << self._index_bits) - 1)).astype(np.int64)
        ranked[past], indices[past] = np.inf, self.size
        return NearestLists(ranked, indices, self._tolerance[ids])

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

    def _scores(self, query_row: np.ndarray, block_row: np.ndarray, products: np.ndarray) -> np.ndarray:
        """Scores of the queries at block rows ``query_row`` against references at ``block_row`` (broadcast
        together) from their ``products``: for "l2", (‖q‖² + ‖x‖²) + (−2 q·x) clamped to 0, as faiss
        rounds it."""
        if self.metric != "l2":
            return products
        scores = self._reference_norms[query_row] + self._reference_norms[block_row]
        scores += products
        return np.maximum(scores, 0, out=scores)

    def _sample_thresholds(self, ids: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """:meth:`_threshold` of the query rows ``ids``, their sample products split between the worker threads."""
        sample_products = torch.mm(torch.from_numpy(self._queries[ids]), self._sample_references.T).numpy()
        workers = min(ids.size, self._workers)
        by_rows = [slice(a, b) for a, b in pairwise(np.linspace(0, ids.size, workers + 1).astype(int))]
        parts = self._pool.map(lambda p: self._threshold(ids[p], sample_products[p], depth[p]), by_rows)
        return np.concatenate(list(parts))

    def _threshold(self, ids: np.ndarray, sample_products: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Per query, a score below which about depth + 3√(depth·stride) + 4·stride references lie: the sample's
        count below the depth-th score is ~Poisson(depth / stride), so falling short happens with probability
        ~1e-4 per query (and is then handled exactly, see :meth:`_complete`)."""
        expected = depth / self._sample_stride
        # One rank more: the sample may hold the query itself.
        rank = np.ceil(expected + 3 * np.sqrt(expected) + 4).astype(np.int64) + 1
        scores = np.full(ids.size, np.inf, np.float32)
        some = np.flatnonzero(rank <= self._sample.size)
        if some.size:
            # For "l2", ‖x‖² − 2 q·x orders a query's references as its scores do (up to rounding: this is only
            # an estimate), one pass instead of three.
            partial = sample_products if some.size == ids.size else sample_products[some]
            if self.metric == "l2":
                partial += self._reference_norms[self._sample]
            chosen = kth_smallest(partial, rank[some])
            scores[some] = chosen + self._query_norms[ids[some]] if self.metric == "l2" else chosen
        return scores

    def _bounds(self, norms: np.ndarray, threshold: np.ndarray, bins: np.ndarray) -> np.ndarray:
        """(ranges, rows) float32: in each range ``bins[b]`` to ``bins[b + 1]`` of block rows, a product above its
        query's bound scores above its threshold (queries of squared norms ``norms``; for "ip" and "cosine" the
        bound is the threshold)."""
        if self.metric != "l2":
            return np.broadcast_to(threshold, (bins.size - 1, threshold.size))
        return self._bounds_l2(
            norms[None, :],
            threshold[None, :],
            self._reference_norms[bins[:-1]][:, None],
            self._reference_norms[bins[1:] - 1][:, None],
        )

    @staticmethod
    def _bounds_l2(norms: np.ndarray, threshold: np.ndarray, lowest: np.ndarray, highest: np.ndarray) -> np.ndarray:
        """Broadcast float32 bounds on −2 q·x: score ≤ t implies −2 q·x ≤ t − ‖q‖² − ‖x‖²
        + rounding, and ‖x‖² ≥ ``lowest`` (and ≤ ``highest``, for the rounding)."""
        norms, lowest, highest = norms.astype(np.float64), lowest.astype(np.float64), highest.astype(np.float64)
        t = threshold.astype(np.float64)
        with np.errstate(invalid="ignore"):  # infinite thresholds
            rounding = 4 * UNIT_ROUNDOFF * (norms + highest + np.abs(t))
            bound = np.nextafter((t - norms - lowest + rounding).astype(np.float32), np.float32(np.inf))
        return np.where(np.isinf(t), t.astype(np.float32), bound)

    def _complete(self, ids: np.ndarray, short: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Keys (unsorted) where the query rows ``short`` with fewer candidates than their depth (the sample put
        their threshold below their depth-th score: rare) get the keys of all their N − 1 others (a second pass)."""
        shift = np.uint64(32 + self._index_bits)
        redone = self._pass(ids[short], np.full(short.size, np.inf, np.float32))
        low = redone & ((np.uint64(1) << shift) - np.uint64(1))
        relabelled = low | (short[redone >> shift].astype(np.uint64) << shift)
        return np.concatenate([keys[~np.isin(keys >> shift, short)], relabelled])
