"""Model files: a safetensors file of the weights whose metadata holds the constructor config as JSON.

Only safetensors are read, so opening a model file never runs code (a pickle is refused, not unpickled)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, TypeVar, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from coseg.atomic import write_bytes_atomic

PathLike = Union[str, os.PathLike]
CONFIG_KEY = "coseg_model_config"
M = TypeVar("M", bound=torch.nn.Module)


def write_checkpoint(path: PathLike, state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                     metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write ``state_dict`` (moved to CPU, made contiguous) to the safetensors file ``path`` atomically, with
    ``config`` (JSON-serialisable) and the extra string ``metadata`` in its header."""
    extra = dict(metadata or {})
    if CONFIG_KEY in extra:
        raise ValueError(f"metadata key '{CONFIG_KEY}' is reserved for the model config")
    bad = [k for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"metadata keys and values must be strings; not so for {bad}")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    write_bytes_atomic(path, save(tensors, metadata={CONFIG_KEY: json.dumps(dict(config)), **extra}))


def _open(path: PathLike, device: str):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        return safe_open(path, framework="pt", device=device)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a safetensors model file ({err}); model files are written by the model's "
                         f"save() (pickled .pt/.pth files are refused: loading them could run code)") from err


def _config(path: PathLike, header: Mapping[str, str]) -> dict[str, Any]:
    if CONFIG_KEY not in header:
        raise ValueError(f"{path} is a safetensors file but not a model file (no '{CONFIG_KEY}' in its metadata)")
    try:
        config = json.loads(header[CONFIG_KEY])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the model config in its metadata is not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the model config in its metadata is not a JSON object")
    return config


def read_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu"
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, str]]:
    """(state dict on ``map_location``, model config, extra metadata) of the model file ``path``."""
    with _open(path, str(torch.device(map_location))) as f:
        header = f.metadata() or {}
        config = _config(path, header)
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    return tensors, config, {k: v for k, v in header.items() if k != CONFIG_KEY}


def load_model_file(path: PathLike, build: Callable[..., M], map_location: Union[str, torch.device] = "cpu") -> M:
    """Rebuild a model saved with :func:`write_checkpoint`: ``build(**config, weights=None)`` (so nothing is
    downloaded), then its state dict, on ``map_location``. Raises ``ValueError`` naming the file when the config
    or the weights do not fit ``build``'s model."""
    state_dict, config, _ = read_checkpoint(path, map_location)
    try:
        model = build(**config, weights=None)
    except TypeError as err:
        raise ValueError(f"{path}: its model config {config} does not fit {build.__name__}'s arguments ({err}); "
                         "is it a model file of this kind?") from err
    model.to(map_location)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        raise ValueError(f"{path}: its weights do not fit the model its config describes ({err})") from err
    return model


def checkpoint_metadata(path: PathLike) -> dict[str, str]:
    """The extra metadata (e.g. epoch, scores) saved in the model file ``path``, without reading its tensors."""
    with _open(path, "cpu") as f:
        header = f.metadata() or {}
    _config(path, header)
    return {k: v for k, v in header.items() if k != CONFIG_KEY}
