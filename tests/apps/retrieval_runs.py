"""Tiny retrieval runs for the trainer, CLI and export tests: a class-folder set and a config that trains in a
fraction of a second (timm's 0.1M-parameter test backbone with random weights, 32-pixel images, 8-d embeddings)."""
from __future__ import annotations

from pathlib import Path

from apps.retrieval.config import RetrievalTrainConfig
from tests.apps.retrieval_files import write_class_folders

CLASSES = [f"class{i}" for i in range(8)]
TRAIN_CLASSES = CLASSES[:6]
BACKBONE = "test_efficientnet"


def tiny_set(root: Path, per_class: int = 4) -> Path:
    """``root/class0..class7/imgNNN.jpg``: 8 classes of ``per_class`` random images; classes 0–5 train, 6–7 test."""
    return write_class_folders(root, CLASSES, per_class=per_class,
                               splits={"train": TRAIN_CLASSES, "test": CLASSES[6:]})


def tiny_config(data: Path, output: Path, **changes) -> RetrievalTrainConfig:
    """Train on classes 0–5 (2 held out for validation: 4 left, P = 2 × K = 2), 2 epochs of the head stage."""
    values = dict(data=str(data), output=str(output), backbone=BACKBONE, weights="none", image_size=32,
                  embedding_dim=8, epochs=2, classes_per_batch=2, samples_per_class=2, val_fraction=0.34,
                  feature_views=2, batch_size=16, quiet=True, device="cpu")
    values.update(changes)
    return RetrievalTrainConfig(**values)
