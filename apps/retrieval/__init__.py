"""Image-level retrieval: data set layouts, a decoded-image dataset, and the embedding model."""
from apps.retrieval.datasets import (RETRIEVAL_LAYOUTS, Entry, Record, RetrievalSplit, detect_retrieval_layout,
                                     load_retrieval_split)
from apps.retrieval.image_dataset import RetrievalImageDataset

__all__ = [
    "RETRIEVAL_LAYOUTS", "Entry", "Record", "RetrievalImageDataset", "RetrievalSplit", "detect_retrieval_layout",
    "load_retrieval_split",
]
