"""Training-state checkpoints (for ``--resume``): written atomically, read back with ``weights_only=True``.

The user-facing model files are safetensors written by the model's own ``save``; this file holds what resuming
needs besides: model and optimizer state, AMP scaler, epoch, best metric so far, training seconds so far, and the RNG
states."""
from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from coseg.atomic import atomic_path


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read safely or does not fit the run."""


def rng_state() -> dict[str, Any]:
    """All RNG states as tensors and plain values (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_training_state(path: Union[str, Path], state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically with ``torch.save``."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Read a training state with ``weights_only=True``: a file carrying arbitrary pickled objects is refused
    and nothing in it is executed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: refused to load: not a safe training checkpoint ({first_line})") from None
    if not isinstance(state, dict) or "epoch" not in state or "model" not in state:
        raise CheckpointError(f"{path}: not a training checkpoint of this toolkit (missing 'epoch'/'model')")
    return state
