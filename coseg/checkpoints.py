"""Loading a trained model file for evaluation/prediction, with the image size it was trained at."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from coseg.data import printable
from coseg.models import Model, load_model
from coseg.models.checkpoint import recorded_image_size

DEFAULT_IMAGE_SIZE = 224


def load_for_inference(checkpoint: Union[str, Path], device: torch.device,
                       image_size: Optional[int] = None) -> tuple[Model, int]:
    """The model in eval mode on ``device`` (channels_last) and the inference size: ``image_size`` if given, else the size the
    checkpoint was trained at (its metadata), else 224. A model whose weights hold NaN or infinite values is refused
    (``ValueError`` naming the file and the tensor): its probabilities would be NaN, thresholded to empty masks."""
    model = load_model(checkpoint, map_location="cpu")
    check_finite_weights(model, checkpoint)
    model = model.to(device, memory_format=torch.channels_last).eval()
    if image_size is None:
        image_size = recorded_image_size(checkpoint) or DEFAULT_IMAGE_SIZE
    if image_size <= 0:
        raise ValueError(f"image size must be positive, got {image_size} (model file {checkpoint})")
    if image_size % model.output_stride:
        raise ValueError(f"image size must be a multiple of {model.output_stride}, got {image_size}")
    return model, image_size


def check_finite_weights(model: Model, checkpoint: Union[str, Path]) -> None:
    """Raise ``ValueError`` naming ``checkpoint`` and the first tensor of ``model``'s state (weights and BatchNorm
    statistics) that holds a NaN or infinite value."""
    for name, value in model.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(f"{printable(checkpoint)}: its weights hold {bad} NaN or infinite value(s) in '{name}', so "
                             "its probabilities would be NaN (masks silently empty); the file is damaged or its "
                             "training diverged: use another model file")
