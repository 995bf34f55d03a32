"""Image-level retrieval: data set layouts, a decoded-image dataset, and the embedding model."""
from apps.retrieval.datasets import (RETRIEVAL_LAYOUTS, Entry, Record, RetrievalSplit, detect_retrieval_layout,
                                     load_retrieval_split)
from apps.retrieval.image_dataset import RetrievalImageDataset
from apps.retrieval.model import DEFAULT_BACKBONE, RetrievalModel, create_retrieval_model, load_retrieval_model
from apps.retrieval.pooling import POOLINGS, AvgPool, GeM

__all__ = [
    "DEFAULT_BACKBONE", "POOLINGS", "RETRIEVAL_LAYOUTS", "AvgPool", "Entry", "GeM", "Record", "RetrievalImageDataset",
    "RetrievalModel", "RetrievalSplit", "create_retrieval_model", "detect_retrieval_layout", "load_retrieval_model",
    "load_retrieval_split",
]
