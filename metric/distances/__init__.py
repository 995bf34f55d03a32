"""Distances between embeddings, pairwise (N, M) and paired (N,): Euclidean (optionally squared), cosine similarity,
SNR; registered in ``metric.registry.DISTANCES``."""
from metric.distances.base_distance import BaseDistance
from metric.distances.cosine import CosineSimilarity
from metric.distances.euclidean import EuclideanDistance, squared_euclidean
from metric.distances.snr import SNRDistance

__all__ = ["BaseDistance", "CosineSimilarity", "EuclideanDistance", "SNRDistance", "squared_euclidean"]
