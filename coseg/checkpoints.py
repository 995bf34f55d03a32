"""Loading a trained model file for evaluation/prediction, with the image size it was trained at."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from coseg.data.io import printable
from coseg.models import Model, load_model
from coseg.models.checkpoint import recorded_image_size

DEFAULT_IMAGE_SIZE = 224


def load_for_inference(checkpoint: Union[str, Path], device: torch.device,
                       image_size: Optional[int] = None) -> tuple[Model, int]:
    """The model in eval mode on ``device`` (channels_last) and the inference size: ``image_size`` if given, else
    the size the checkpoint was trained at (its metadata), else 224. ``ValueError`` naming the file and where the
    size came from if the model cannot take it."""
    model = load_model(checkpoint, map_location="cpu").to(device, memory_format=torch.channels_last).eval()
    what = "image size" if image_size is not None else "the image size its metadata records"
    if image_size is None:
        image_size = recorded_image_size(checkpoint) or DEFAULT_IMAGE_SIZE
    if image_size <= 0:
        raise ValueError(f"{what} must be positive, got {image_size} (model file {printable(checkpoint)})")
    if image_size % model.output_stride:
        raise ValueError(f"{what} must be a multiple of {model.output_stride}, got {image_size} (model file "
                         f"{printable(checkpoint)})")
    return model, image_size

