"""k-means cluster assignments with faiss (the clustering behind NMI)."""
from __future__ import annotations

import numpy as np

from metric.retrieval.faiss_backend import import_faiss


def kmeans_assign(
    embeddings: np.ndarray, num_clusters: int, niter: int = 20, seed: int = 1234, gpu: bool = False
) -> np.ndarray:
    """Cluster (N, D) float32 rows with faiss k-means; return each row's nearest centroid, int64 (N,).

    Defaults are pytorch-metric-learning's AccuracyCalculator's (``faiss.Kmeans(d, k, niter=20)``, whose default
    seed is 1234; more than 256·k rows are subsampled for training, seeded), so both give the same clusters.
    """
    n, dim = embeddings.shape
    if not 1 <= num_clusters <= n:
        raise ValueError(f"num_clusters must be in [1, {n}] (the number of rows), got {num_clusters}")
    faiss = import_faiss()
    # min_points_per_centroid only silences faiss's "please provide more points" warning on small sets.
    kmeans = faiss.Kmeans(dim, num_clusters, niter=niter, seed=seed, gpu=gpu, min_points_per_centroid=1)
    kmeans.train(embeddings)
    _, assignment = kmeans.index.search(embeddings, 1)
    return assignment[:, 0].astype(np.int64)
