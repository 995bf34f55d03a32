"""k-means cluster assignments with faiss (the clustering behind NMI)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from metric._checks import check_count, is_integer, whole_number
from metric.retrieval.faiss_backend import ArrayLike, as_float32_rows, centred, gpu_index, import_faiss


def kmeans_assign(
    embeddings: ArrayLike, num_clusters: int, niter: int = 20, seed: int = 1234, gpu: Optional[int] = None
) -> np.ndarray:
    """Cluster (N, D) rows with faiss k-means (in float32); return each row's nearest centroid, int64 (N,).

    Defaults are pytorch-metric-learning's AccuracyCalculator's (``faiss.Kmeans(d, k, niter=20)``, whose default
    seed is 1234; more than 256·k rows are subsampled for training, seeded), so both give the same clusters,
    except for rows whose mean outweighs their spread: they are clustered centred (:func:`centred`; a shift moves
    k-means's centroids alike, but far from the origin faiss's float32 distances lost the rows to round-off).
    ``gpu``: a CUDA device index to run on that GPU alone (faiss built with GPU support), as the neighbour
    searches do; None runs on the CPU.
    """
    if isinstance(gpu, bool):
        raise TypeError(f"gpu must be a CUDA device index or None, got {gpu}")
    x = centred(as_float32_rows(embeddings, "embeddings"))
    n, dim = x.shape
    if not is_integer(num_clusters) or not 1 <= num_clusters <= n:
        raise ValueError(f"num_clusters must be in [1, {n}] (the number of rows), got {num_clusters}")
    check_count(niter, 1, "niter")
    seed = whole_number("seed", seed)  # faiss takes no numpy integers
    if not -(2**31) <= seed < 2**31:
        raise ValueError(f"seed must be in [-2**31, 2**31) (faiss keeps a 32-bit seed), got {seed}")
    faiss = import_faiss()
    # min_points_per_centroid only silences faiss's "please provide more points" warning on small sets.
    kmeans = faiss.Kmeans(dim, int(num_clusters), niter=int(niter), seed=seed, min_points_per_centroid=1)
    if gpu is not None:
        # faiss.Kmeans(gpu=...) would spread the work over every visible GPU.
        kmeans.index = gpu_index(kmeans.index, gpu)
    kmeans.train(x)
    _, assignment = kmeans.index.search(x, 1)
    return assignment[:, 0].astype(np.int64)
