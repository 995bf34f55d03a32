"""Named shape and value checks for public boundaries (kept out of hot inner loops)."""
from __future__ import annotations

import math
from numbers import Integral
from typing import Any, Optional, Sequence

import numpy as np
import torch


def is_integer(value: Any) -> bool:
    """Whether ``value`` is a whole number given as one: an ``int`` or a numpy integer, not a bool, 3.0 or "3"."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def outside_unit_range(x: torch.Tensor, slack: float = 0.0) -> Optional[tuple[float, float, int]]:
    """``(min, max, NaN count)`` of ``x`` when it holds values outside [−slack, 1 + slack] or NaN; None when all
    are inside (or it is empty). One device sync: for checks at public boundaries (model inputs in [0, 1])."""
    if not x.numel():
        return None
    low, high = (float(v) for v in torch.aminmax(x.detach()))
    if -slack <= low and high <= 1 + slack:  # false for NaN
        return None
    return low, high, int(x.isnan().sum())


def check_count(value: Any, minimum: int, name: str) -> int:
    """``value`` as a Python int (what the data loader and faiss take of a numpy integer); ``ValueError`` unless it is
    an integer (:func:`is_integer`) >= ``minimum``."""
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_finite_number(value: float, name: str) -> None:
    """Raise ``ValueError`` if ``value`` (a margin, weight, ...) is NaN or infinite: every loss would be NaN/Inf;
    ``TypeError`` naming it for a bool or a value that is no number ("0.2", None)."""
    number = f"{name} must be a number, got {value!r} ({type(value).__name__})"
    if isinstance(value, bool):
        raise TypeError(number)
    try:
        finite = math.isfinite(value)
    except TypeError:
        raise TypeError(number) from None
    if not finite:
        raise ValueError(f"{name} must be a finite number, got {value}")


def whole_number(name: str, value: Any) -> int:
    """``value`` as an ``int`` (a numpy integer too); ``TypeError`` naming the argument ``name`` for anything else
    (a bool, 3.0): model files record such sizes, and their loaders accept only integers."""
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def check_shape(x: torch.Tensor, dims: Sequence[str], name: str = "tensor") -> dict[str, int]:
    """Check ``x`` has ``len(dims)`` dimensions; return ``{dim name: size}``.

    Dimension names that repeat must have equal sizes; a name made of digits must equal that size.
    Raises ``ValueError`` showing the expected and received shapes.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    expected = "(" + ", ".join(dims) + ")"
    if x.dim() != len(dims):
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
    sizes: dict[str, int] = {}
    for dim, size in zip(dims, x.shape):
        if dim.isdigit() and int(dim) != size:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
        if sizes.setdefault(dim, size) != size:
            raise ValueError(f"{name} must have shape {expected} with equal '{dim}' sizes, got {tuple(x.shape)}")
    return sizes


def check_same_size(a: int, b: int, what: str) -> None:
    """Raise ``ValueError`` unless ``a == b``; ``what`` names the two sizes, e.g. 'embeddings and labels'."""
    if a != b:
        raise ValueError(f"{what} must have the same length, got {a} and {b}")


def check_floating(x: torch.Tensor, name: str = "tensor") -> None:
    """Raise ``TypeError`` unless ``x`` holds floating-point values (embeddings, not class ids)."""
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def check_same_device(x: torch.Tensor, other: torch.Tensor, name: str, other_name: str) -> None:
    """Raise ``ValueError`` unless ``other`` is on the device of ``x`` (``name`` and ``other_name`` name them)."""
    if other.device != x.device:
        raise ValueError(f"{other_name} must be on the device of {name} ({x.device}), got {other.device}: "
                         f"move it with .to({name}.device)")


def check_embedding_size(x: torch.Tensor, name: str = "embeddings") -> None:
    """Raise ``ValueError`` unless ``x`` (N, D, ...) has D ≥ 1: with D = 0 every distance is 0 (or undefined)."""
    if x.shape[1] == 0:
        raise ValueError(f"{name} must have at least one dimension (D >= 1), got shape {tuple(x.shape)}")


def check_built_size(embeddings: torch.Tensor, embedding_size: int) -> None:
    """Raise ``ValueError`` unless ``embeddings`` (N, D) have the D a loss with per-class vectors (centroids,
    centres) was built with: the message names the loss's ``embedding_size``, not its vectors' shape."""
    if embeddings.shape[1] != embedding_size:
        raise ValueError(f"embeddings must have shape (N, {embedding_size}) (the loss's embedding_size), got "
                         f"{tuple(embeddings.shape)}")


def check_labelled_embeddings(embeddings: torch.Tensor, labels: torch.Tensor) -> int:
    """Check finite floating-point ``embeddings`` (N, D), D ≥ 1, and integer ``labels`` (N,) on the same device;
    return N."""
    n = check_shape(embeddings, ["N", "D"], "embeddings")["N"]
    check_embedding_size(embeddings)
    check_same_size(n, check_shape(labels, ["N"], "labels")["N"], "embeddings and labels")
    check_floating(embeddings, "embeddings")
    if labels.is_floating_point():
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    check_same_device(embeddings, labels, "embeddings", "labels")
    check_finite(embeddings, "embeddings")
    return n


def check_class_ids(labels: torch.Tensor, num_classes: int, indexes: str) -> torch.Tensor:
    """``labels`` as int64 class ids after checking each lies in [0, ``num_classes``); ``indexes`` says what they
    index, for the message (e.g. 'one centroid per class')."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}) ({indexes}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    return labels.long()  # one_hot, cross_entropy and gather take int64 ids; uint8 indices would act as a mask


class NonFiniteError(ValueError):
    """An input holding NaN or Inf (e.g. the embeddings of a diverged model); trainers treat it as a non-finite
    loss."""


def wrappable(array: np.ndarray) -> np.ndarray:
    """``array``, or a copy of it where it has negative strides (``a[::-1]``), which torch cannot wrap."""
    return array.copy() if any(stride < 0 for stride in array.strides) else array


def as_class_ids(labels: Any, name: str = "labels") -> torch.Tensor:
    """``labels`` (a tensor, numpy array or sequence) as a tensor, for class ids; ``TypeError`` naming ``name`` for
    what holds no numbers (class names, ragged lists). Its dtype is the caller's to check (``[]`` gives float)."""
    try:
        return torch.as_tensor(wrappable(labels) if isinstance(labels, np.ndarray) else labels)
    except (TypeError, ValueError, RuntimeError) as error:  # e.g. class names: "too many dimensions 'str'"
        raise TypeError(f"{name} must be integer class ids, got {type(labels).__name__} ({error})") from None


def check_finite(x: torch.Tensor, name: str = "tensor") -> None:
    """Raise ``NonFiniteError`` (a ``ValueError``) if ``x`` holds NaN or Inf.

    A finite sum proves every element finite (one cheap reduction); only a non-finite sum, from a bad element
    or an overflow, pays for the elementwise test."""
    if not x.is_floating_point() or bool(torch.isfinite(x.sum())):
        return
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise NonFiniteError(f"{name} holds {bad} NaN/Inf value(s)")
