"""Training-state checkpoints (for ``--resume``): written atomically, read back with ``weights_only=True``.

The user-facing model files are safetensors written by the model's own ``save``; this file holds what resuming
needs besides: model and optimizer state, AMP scaler, epoch, best metric so far, training seconds so far, and the RNG
states."""
from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Optional, Union

import numpy as np
import safetensors
import safetensors.torch
import torch

from coseg.atomic import atomic_path
from coseg.data.io import printable


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read safely, does not fit the run, or cannot be written."""


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


class _WriteErrors:
    """A binary file for ``torch.save`` that keeps the OSError of a failed write (a full disk), which torch's writer
    reports as a RuntimeError of its own ('unexpected pos ...')."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.error: Optional[OSError] = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.file.flush()


def save_training_state(path: Union[str, Path], state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically with ``torch.save``. A write that fails
    (a full disk) raises its OSError naming ``path``, and leaves the file already there as it was."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        file = _WriteErrors(f)
        try:
            torch.save(state, file)
        except RuntimeError:
            if file.error is None:
                raise
            raise OSError(file.error.errno, file.error.strerror, str(path)) from None


REQUIRED = {"epoch": int, "model": dict, "optimizer": dict, "scaler": dict, "best": (float, type(None)),
            "best_epoch": int, "rng": dict}
"""The entries every training state holds, with their types (older ones lack ``seconds`` and ``world_size``)."""


def load_training_state(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Read a training state with ``weights_only=True``: a file carrying arbitrary pickled objects is refused
    and nothing in it is executed; a damaged one (truncated, failing its archive's checksums, lacking entries) is
    refused too."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    damaged = _failed_checksum(path)
    if damaged is not None:
        raise CheckpointError(f"{path}: damaged: its entry {damaged} fails its checksum")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a damaged or foreign file fails in whatever way the unpickler meets it
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        detail = f"{type(e).__name__}: {first_line}" if first_line else type(e).__name__
        raise CheckpointError(f"{path}: refused to load: not a safe training checkpoint ({detail})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a training checkpoint of this toolkit (holds a {type(state).__name__})")
    wrong = [key for key, kind in REQUIRED.items() if key not in state or not isinstance(state[key], kind)]
    if wrong:
        raise CheckpointError(f"{path}: not a training checkpoint of this toolkit (missing or damaged: "
                              f"{', '.join(wrong)})")
    return state


def check_world_size(path: Union[str, Path], state: dict[str, Any], world_size: int) -> None:
    """Refuse to resume ``state`` (read from ``path``) with another number of processes than saved it: its random
    streams are one per process, and its batches were shared out between that many."""
    saved = state.get("world_size", 1)
    if saved != world_size:
        raise CheckpointError(f"{path}: saved by a run with {saved} process(es); resume it with the same number "
                              f"(now {world_size})")


def check_best_file(path: Union[str, Path], state: dict[str, Any]) -> None:
    """Refuse to resume ``state`` (read from ``path``, a run's ``last.pt``) when its best epoch is an earlier one and
    the ``best.safetensors`` beside it is missing or cannot be read (damaged, cut short): ``last.pt`` holds the last
    epoch's model only, so a resume cannot write that file again, and would keep it as the run's best model."""
    path = Path(path)
    if state["best_epoch"] == state["epoch"]:  # the resume writes it again
        return
    best = path.with_name("best.safetensors")
    try:
        safetensors.torch.load(best.read_bytes())
        return
    except FileNotFoundError:
        problem = "not found"
    except (OSError, safetensors.SafetensorError) as e:
        problem = f"cannot be read ({e})"
    raise CheckpointError(f"{best}: {problem}; it is the model of the run's best epoch ({state['best_epoch']}), which "
                          f"{path.name} (epoch {state['epoch']}) does not hold, so --resume cannot write it again: put "
                          "back a copy of it, then --resume, or train a new run (--overwrite, or another --output)")


def check_metadata(path: Union[str, Path], state: dict[str, Any], metadata: dict[str, str]) -> None:
    """Refuse to resume ``state`` (read from ``path``) when an entry of ``metadata``, what the trainer records about
    the run in its model files (the image size, the groups or classes it trains and validates on), differs from the
    one its checkpoint recorded: e.g. groups added to the data set since, which a resume would carve anew (a former
    validation group trained on, the best epoch chosen on other groups). A state of an older version, without the
    entry, is taken as it is."""
    saved = state.get("model_metadata")
    if not isinstance(saved, dict):
        return
    changed = [_change(key, str(saved[key]), value) for key, value in metadata.items()
               if key in saved and saved[key] != value]
    if changed:
        raise CheckpointError(f"{path}: the run's data changed since it was trained ({'; '.join(changed)}): resume it "
                              "with the data it was trained with, or train a new run (--overwrite, or another "
                              "--output)")


def _change(key: str, before: str, now: str, shown: int = 5) -> str:
    """How metadata entry ``key`` changed from ``before`` to ``now``: the names added and gone for a record of names
    (``{"count": n, "names": [...]}``), up to ``shown`` of each, else both values (cut short)."""
    try:
        old, new = set(json.loads(before)["names"]), set(json.loads(now)["names"])
    except (ValueError, TypeError, KeyError):
        return f"{key} {before[:80]!r} → {now[:80]!r}"

    def listed(names: set[str], what: str) -> list[str]:
        first = ", ".join(printable(n) for n in sorted(names)[:shown])
        return [f"{first}{', …' if len(names) > shown else ''} {what}"] if names else []

    return f"{key}: " + "; ".join(listed(new - old, "added") + listed(old - new, "gone"))


def _failed_checksum(path: Path) -> Optional[str]:
    """The first entry of ``path``'s zip archive (``torch.save``'s format) whose data fails its CRC-32; None when
    every entry passes, or when the file is no zip archive (``torch.load`` then says what it is)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError):
        return None
    return None if bad is None else (bad.partition("/")[2] or bad)  # without the archive's top folder
