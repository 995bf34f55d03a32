"""Normalised mutual information between two labelings, and NMI of a k-means clustering of embeddings."""
from __future__ import annotations

import math

import numpy as np

from metric.retrieval.faiss_backend import (ArrayLike, LabelsLike, as_float32_rows, as_int64_labels, gpu_device,
                                            l2_normalized)
from metric.retrieval.kmeans import kmeans_assign
from metric.retrieval.knn import Metric, check_metric


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_info(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """NMI = I(U; V) / ((H(U) + H(V)) / 2), natural logs, from the sparse contingency table.

    Same value and conventions as scikit-learn's ``normalized_mutual_info_score`` (arithmetic normaliser): two
    single-cluster labelings give 1.0, zero mutual information gives 0.0.
    """
    labels_true, labels_pred = np.asarray(labels_true).ravel(), np.asarray(labels_pred).ravel()
    if labels_true.shape != labels_pred.shape:
        raise ValueError(f"the two labelings must have the same length, got {labels_true.size} and {labels_pred.size}")
    _, u = np.unique(labels_true, return_inverse=True)
    _, v = np.unique(labels_pred, return_inverse=True)
    n = u.size
    if n == 0 or (u.max() == 0 and v.max() == 0):
        return 1.0
    rows, cols = np.bincount(u), np.bincount(v)
    cells, joint = np.unique(u.astype(np.int64) * cols.size + v, return_counts=True)
    iu, iv = np.divmod(cells, cols.size)
    mi = float((joint / n * (np.log(joint) + math.log(n) - np.log(rows[iu]) - np.log(cols[iv]))).sum())
    if mi < np.finfo(np.float64).eps:
        return 0.0
    return min(1.0, mi / ((_entropy(rows) + _entropy(cols)) / 2))  # rounding put equal labelings at 1 + 2 ulps


def kmeans_nmi(
    embeddings: ArrayLike, labels: LabelsLike, metric: Metric = "l2", niter: int = 20, seed: int = 1234
) -> float:
    """NMI between integer ``labels (N,)`` (a tensor, numpy array or list) and a k-means clustering of
    ``embeddings (N, D)`` with k = number of classes.

    ``metric="cosine"`` clusters L2-normalised embeddings; "l2" and "ip" cluster them as they are. Runs on the
    GPU of CUDA embeddings (that one alone) when faiss has GPU support.
    """
    check_metric(metric)
    x = as_float32_rows(embeddings, "embeddings")
    y = as_int64_labels(labels, x.shape[0])
    if x.shape[0] == 0:
        raise ValueError("embeddings is empty: NMI needs at least one sample")
    x = l2_normalized(x) if metric == "cosine" else x
    clusters = kmeans_assign(x, np.unique(y).size, niter=niter, seed=seed, gpu=gpu_device(embeddings))
    return normalized_mutual_info(y, clusters)
