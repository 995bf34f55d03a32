"""Retrieval metrics on faiss: exact kNN, Recall@K, MAP@R, k-means NMI (the protocol: :func:`retrieval_metrics`)."""
from metric.retrieval.kmeans import kmeans_assign
from metric.retrieval.knn import ExactIndex, knn
from metric.retrieval.map_at_r import average_precision_at_r
from metric.retrieval.nmi import kmeans_nmi, normalized_mutual_info
from metric.retrieval.recall_at_k import recall_hits
from metric.retrieval.retrieval_metrics import retrieval_metrics

__all__ = [
    "ExactIndex", "average_precision_at_r", "kmeans_assign", "kmeans_nmi", "knn", "normalized_mutual_info",
    "recall_hits", "retrieval_metrics",
]
