"""Model files: a safetensors file of the weights whose metadata holds the constructor config as JSON.

Only safetensors are read, so opening a model file never runs code (a pickle is refused, not unpickled)."""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Mapping, Optional, TypeVar, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from coseg.atomic import write_bytes_if_changed
from coseg.data.io import printable
from coseg.models.pretrained import check_castable, key_problems, missing_keys

PathLike = Union[str, os.PathLike]
CONFIG_KEY = "coseg_model_config"
KIND_KEY = "coseg_model_kind"  # which loader reads the file: a co-segmentation or a retrieval model's
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on the JSON header
# how the files torch.save writes start: a zip archive (torch >= 1.6), a pickle (older torch, protocol 2 to 5)
TORCH_SAVE_STARTS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
TRAINED_ON = "trained_on"  # metadata: the groups (classes) a model was trained on
VALIDATED_ON = "validated_on"  # metadata: those its epoch was chosen on
MAX_NAMES_JSON = 1_000_000  # names longer than this as JSON are counted, not stored (a header stays small)
M = TypeVar("M", bound=torch.nn.Module)


def write_checkpoint(path: PathLike, state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                     metadata: Optional[Mapping[str, str]] = None, kind: Optional[str] = None) -> None:
    """Write ``state_dict`` (moved to CPU, made contiguous) to the safetensors file ``path`` atomically, with
    ``config`` (JSON-serialisable), the model's ``kind`` (e.g. "retrieval": a loader of another kind names it) and
    the extra string ``metadata`` in its header; a file holding these bytes already is left as it is (a resume with
    nothing left to train writes nothing). Tensors that share memory (a module held twice, e.g. an ensemble of
    one model twice) are written as copies: safetensors refuses shared ones."""
    extra = dict(metadata or {})
    reserved = [k for k in (CONFIG_KEY, KIND_KEY) if k in extra]
    if reserved:
        raise ValueError(f"metadata key '{reserved[0]}' is reserved for the model file's own entries")
    bad = [k for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise TypeError(f"metadata keys and values must be strings; not so for {bad}")
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for key, value in state_dict.items():
        tensor = value.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        tensors[key] = tensor.clone() if storage in storages else tensor
        storages.add(storage)
    own = {CONFIG_KEY: json.dumps(dict(config)), **({KIND_KEY: kind} if kind is not None else {})}
    write_bytes_if_changed(path, _serialized(tensors, {**own, **extra}))


def _serialized(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """The safetensors bytes of ``tensors`` with ``metadata``, the header's entries in a fixed order (metadata
    keys sorted, tensors by offset): safetensors writes the metadata in hash order, which changes from one write to
    the next, so the same model saved twice would differ byte for byte (and look like another model to whatever
    compares the files, e.g. an export's record of its model)."""
    blob = save(dict(tensors), metadata=dict(metadata))
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    ordered = {"__metadata__": dict(sorted(header.pop("__metadata__").items())),
               **dict(sorted(header.items(), key=lambda item: item[1]["data_offsets"]))}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes with spaces
    return len(text).to_bytes(8, "little") + text + blob[8 + size:]


TRAINING_STATE = "last.pt"  # the trainers' resumable state beside a run's model files


def training_state_given(path: Path) -> str:
    """What to say when a run's training state (:data:`TRAINING_STATE`) is given where a model file is needed."""
    return (f"{printable(path)} is a run's training state (what --resume continues from), not a model file: give "
            "best.safetensors or last.safetensors from the same folder")


def _not_a_model_file(path: Path, reason: object) -> ValueError:
    if path.name == TRAINING_STATE:
        return ValueError(training_state_given(path))
    return ValueError(f"{printable(path)} is not a safetensors model file ({reason}); model files are written by the "
                      "model's save() (pickled .pt/.pth files are refused: loading them could run code)")


def _read(path: Path, whole: bool) -> tuple[dict[str, str], bytes]:
    """(the string metadata in the safetensors header of ``path``, the whole file if ``whole`` else b"").

    Python reads the file, not safetensors' ``safe_open``, so any name the OS accepts works (``safe_open`` refuses
    a path that is not UTF-8)."""
    if not path.is_file():
        folder = " is a folder; a run's model is its best.safetensors" if path.is_dir() else ""
        raise FileNotFoundError(f"model file not found: {printable(path)}{folder}")
    try:
        with open(path, "rb") as f:
            metadata = _header_metadata(path, f)
            f.seek(0)
            return metadata, f.read() if whole else b""
    except OSError as err:
        raise ValueError(f"cannot read the model file {printable(path)}: {err.strerror or err}") from err


def _header_metadata(path: Path, f: BinaryIO) -> dict[str, str]:
    """The ``__metadata__`` of the safetensors header at the start of ``f``: an 8-byte little-endian length, then
    that many bytes of JSON."""
    prefix = f.read(8)
    if len(prefix) < 8:
        raise _not_a_model_file(path, "too short for a safetensors header")
    size = int.from_bytes(prefix, "little")
    if size > MAX_HEADER_BYTES:
        raise _not_a_model_file(path, "it is a file torch.save wrote, a zip archive or a pickle"
                                if prefix.startswith(TORCH_SAVE_STARTS) else
                                f"header length {size} is over {MAX_HEADER_BYTES} bytes")
    text = f.read(size)
    if len(text) < size:
        raise _not_a_model_file(path, "the file ends inside its header")
    try:
        header = json.loads(text.decode("utf-8"))
    except ValueError as err:
        raise _not_a_model_file(path, f"its header is not UTF-8 JSON: {err}") from err
    except RecursionError as err:
        raise _not_a_model_file(path, "its header nests JSON too deeply") from err
    metadata = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _not_a_model_file(path, "its header is not a JSON object with string metadata")
    return metadata


def _config(path: PathLike, header: Mapping[str, str]) -> dict[str, Any]:
    if CONFIG_KEY not in header:
        raise ValueError(f"{printable(path)} is a safetensors file but not a model file (no '{CONFIG_KEY}' in its "
                         "metadata)")
    try:
        config = json.loads(header[CONFIG_KEY])
    except json.JSONDecodeError as err:
        raise ValueError(f"{printable(path)}: the model config in its metadata is not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"{printable(path)}: the model config in its metadata is not a JSON object")
    return config


def _check_kind(path: PathLike, header: Mapping[str, str], kind: Optional[str]) -> None:
    """Refuse a model file of another kind than ``kind`` (files of versions that did not record it pass)."""
    found = header.get(KIND_KEY)
    if kind is not None and found is not None and found != kind:
        held = found if found.endswith(" state") else f"{found} model"  # a loss's state is saved beside its model
        raise ValueError(f"{printable(path)} holds a {printable(held)}, not a {kind} model: give the model file of a "
                         f"{kind} run")


def _extra(header: Mapping[str, str]) -> dict[str, str]:
    """The metadata of a model file's header besides its own entries (config, kind)."""
    return {k: v for k, v in header.items() if k not in (CONFIG_KEY, KIND_KEY)}


def read_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu", kind: Optional[str] = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, str]]:
    """(state dict on ``map_location``, model config, extra metadata) of the model file ``path``; with ``kind``,
    a file recorded as another kind of model is refused."""
    path = Path(path)
    header, data = _read(path, whole=True)
    _check_kind(path, header, kind)
    config = _config(path, header)
    device = torch.device(map_location)
    return {k: v.to(device) for k, v in _tensors(path, data).items()}, config, _extra(header)


def _tensors(path: Path, data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of the model file ``path`` whose bytes are ``data`` (its header already read)."""
    try:
        return load(data)
    except SafetensorError as err:  # its header holds a model config: a model file, cut short or damaged
        raise ValueError(f"{printable(path)}: the model file is truncated or corrupt, its tensors cannot be read "
                         f"({err}); save or copy it again") from err


def update_metadata(path: PathLike, changes: Mapping[str, str]) -> None:
    """Write the model file ``path`` again (atomically) with ``changes`` in its extra metadata; its tensors, config
    and kind as they are (no model is built)."""
    path = Path(path)
    header, data = _read(path, whole=True)
    _config(path, header)
    write_bytes_if_changed(path, _serialized(_tensors(path, data), {**header, **changes}))


Upgrade = Callable[[dict[str, torch.Tensor], dict[str, Any]], tuple[dict[str, torch.Tensor], dict[str, Any]]]


def load_model_file(path: PathLike, build: Callable[..., M], kind: str,
                    map_location: Union[str, torch.device] = "cpu", upgrade: Optional[Upgrade] = None) -> M:
    """Rebuild a ``kind`` model saved with :func:`write_checkpoint`: ``build(**config, weights=None)`` (so nothing
    is downloaded), then its state dict, on ``map_location``; ``upgrade`` first turns the state dict and config of a
    file an older version wrote into the current form. Raises ``ValueError`` naming the file when it holds another
    kind of model, or the config or the weights do not fit ``build``'s model."""
    state_dict, config, _ = read_checkpoint(path, map_location, kind)
    if upgrade is not None:
        state_dict, config = upgrade(state_dict, config)
    try:
        model = build(**config, weights=None)
    except TypeError as err:
        raise ValueError(f"{printable(path)}: its model config {config} does not fit a {kind} model ({err}); is it "
                         f"the model file of a {kind} run?") from err
    except ValueError as err:  # a config the builder refuses (e.g. saved by an older version that allowed it)
        raise ValueError(f"{printable(path)}: {err}") from err
    except KeyError as err:  # a name this version does not know (architecture, smp encoder)
        raise ValueError(f"{printable(path)}: {err.args[0] if err.args else err}") from err
    model.to(map_location)
    target = model.state_dict()
    problems = key_problems(state_dict, target, missing_keys(state_dict, target),
                            [k for k in state_dict if k not in target])
    if problems:  # named in one line: load_state_dict lists every key, over lines
        raise ValueError(f"{printable(path)}: its weights do not fit the model its config describes ({problems})")
    check_castable(state_dict, target, printable(path))
    _check_finite(state_dict, path)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        raise ValueError(f"{printable(path)}: its weights do not fit the model its config describes ({err})") from err
    return model


def _check_finite(state_dict: Mapping[str, torch.Tensor], path: PathLike) -> None:
    """Refuse (``ValueError`` naming the file and the tensor) weights or statistics that hold NaN or infinity: the
    model's outputs would be NaN (co-segmentation masks thresholded to empty without a word)."""
    for name, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(f"{printable(path)}: its weights hold {bad} NaN or infinite value(s) in '{name}'; the "
                             "file is damaged or its training diverged: use another model file")


def checkpoint_metadata(path: PathLike) -> dict[str, str]:
    """The extra metadata (e.g. epoch, scores) saved in the model file ``path``, without reading its tensors."""
    header, _ = _read(Path(path), whole=False)
    _config(path, header)
    return _extra(header)


def saved_model_kind(path: PathLike) -> Optional[str]:
    """The kind of model (e.g. "co-segmentation", "retrieval"; "saved" for files that do not record it) a safetensors
    file holds when a model's ``save()`` wrote it (its header records the model's config), else None (weights alone,
    e.g. an encoder's state dict)."""
    header, _ = _read(Path(path), whole=False)
    return header.get(KIND_KEY, "saved") if CONFIG_KEY in header else None


def recorded_image_size(path: PathLike) -> Optional[int]:
    """The image size (pixels) the model in ``path`` was trained at, from its metadata; None if not recorded.
    Raises ``ValueError`` naming the file if the recorded size is not a positive integer."""
    value = checkpoint_metadata(path).get("image_size")
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]+", value) or int(value) == 0:
        raise ValueError(f"{printable(path)}: its metadata 'image_size' must be a positive integer, got {value!r}")
    return int(value)


def names_record(names: Iterable[str]) -> str:
    """The metadata value recording the group (class) ``names``: JSON ``{"count": n, "names": [sorted names]}``, or
    ``{"count": n}`` alone (not stored) when the names take over :data:`MAX_NAMES_JSON` characters as JSON."""
    unique = sorted(set(names))
    listed = json.dumps(unique)  # ASCII: names that are not UTF-8 (surrogate escapes) are written as \u escapes
    if len(listed) > MAX_NAMES_JSON:
        return json.dumps({"count": len(unique)})
    return f'{{"count": {len(unique)}, "names": {listed}}}'


def seen_metadata(trained: Iterable[str], validated: Iterable[str]) -> dict[str, str]:
    """The metadata recording the groups (classes) a model was ``trained`` and ``validated`` (epoch chosen) on."""
    return {TRAINED_ON: names_record(trained), VALIDATED_ON: names_record(validated)}


def recorded_names(path: PathLike, key: str) -> Optional[frozenset[str]]:
    """The names recorded under ``key`` (:data:`TRAINED_ON`, :data:`VALIDATED_ON`) in the model file ``path``; None
    when not recorded (a model of an older version or of the Python API) or counted only. Raises ``ValueError``
    naming the file and the key when the record is not of the form :func:`names_record` writes."""
    value = checkpoint_metadata(path).get(key)
    if value is None:
        return None
    try:
        record = json.loads(value)
    except json.JSONDecodeError as err:
        raise ValueError(f"{printable(path)}: its metadata '{key}' is not valid JSON ({err})") from err
    names = record.get("names") if isinstance(record, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("count"), int) or not (
            names is None or isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ValueError(f"{printable(path)}: its metadata '{key}' must be a JSON object with a 'count' and, if "
                         "stored, a list of 'names'")
    return None if names is None else frozenset(names)


@dataclass(frozen=True)
class Field:
    """What a model-config field must hold: ``accepts`` checks its JSON value, ``expected`` says it in errors."""

    expected: str
    accepts: Callable[[Any], bool]


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(minimum: int) -> Field:
    """An integer (not a bool, not 3.0) >= ``minimum``."""
    return Field(f"an integer >= {minimum}",
                 lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum)


def numbers(count: int, positive: bool = False) -> Field:
    """A list of ``count`` finite numbers, > 0 if ``positive``."""
    return Field(f"a list of {count} finite {'positive ' if positive else ''}numbers",
                 lambda v: isinstance(v, list) and len(v) == count
                 and all(_finite_number(x) and (x > 0 or not positive) for x in v))


BOOLEAN = Field("true or false", lambda v: isinstance(v, bool))
NAME = Field("a non-empty string", lambda v: isinstance(v, str) and v != "")


def check_config(config: Mapping[str, Any], fields: Mapping[str, Field], where: str = "") -> None:
    """Raise ``ValueError`` naming the first field of the model config ``config`` that ``fields`` does not list or
    whose value its :class:`Field` does not accept; ``where`` goes before field names (e.g. ``members[1].``).
    Fields ``fields`` lists but ``config`` lacks are allowed (files of older versions: the builder's defaults)."""
    for key, value in config.items():
        if key not in fields:
            raise ValueError(f"its model config has an unknown field '{where}{key}' (known: {', '.join(fields)}); "
                             "was it written by another version?")
        if not fields[key].accepts(value):
            shown = json.dumps(value)
            raise ValueError(f"model config field '{where}{key}' must be {fields[key].expected}, got "
                             f"{shown if len(shown) <= 80 else shown[:77] + '...'}")
