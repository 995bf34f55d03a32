"""Distance objects: one triplet body serves Euclidean, cosine and SNR through them."""
from __future__ import annotations

import contextlib
import math
from typing import ContextManager, Iterator, Optional

import torch
from torch import nn

from metric._checks import (check_count, check_embedding_size, check_finite, check_floating, check_same_device,
                            check_same_size, check_shape)


def computing_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float16/bfloat16, else ``dtype``: in 16 bits ‖x‖² + ‖y‖² − 2xᵀy loses nearby points to
    round-off (bfloat16 keeps 3 digits of ‖x‖²) and squares overflow float16 beyond 256."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in :func:`computing_dtype` (float32 if it is float16/bfloat16, else unchanged)."""
    return x.to(computing_dtype(x.dtype))


def no_autocast(x: torch.Tensor) -> ContextManager:
    """A context that turns autocast off on the device of ``x`` while it is on (it would run the products of a
    distance in 16 bits); nothing otherwise."""
    device = x.device.type
    return torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext()


def overflow_scale(x: torch.Tensor, name: str, dtype: torch.dtype) -> float:
    """Check that ``x`` (N, D) is finite (``NonFiniteError`` naming ``name`` otherwise) and return 1, or the power of
    two to divide it by so that its rows' norms stay below sqrt(max)/16 of the computing ``dtype`` (2⁶⁰ ≈ 1.2e18
    in float32), where the squares and products of a distance cannot overflow, even after centring.

    Division by a power of two is exact. Usual inputs cost one reduction, Σx² (as cheap as
    :func:`check_finite`'s sum; it bounds every row's squared norm); only a larger Σx² pays for the exact bound."""
    limit = math.sqrt(torch.finfo(dtype).max) / 16
    dim = x.shape[1]
    if torch.finfo(x.dtype).max * math.sqrt(dim) <= limit:  # e.g. float16 computed in float32: never too large
        check_finite(x, name)
        return 1.0
    flat = x.detach().reshape(-1)
    squares = float(torch.dot(flat, flat))
    if squares <= limit * limit:
        return 1.0
    if not math.isfinite(squares):
        check_finite(x, name)  # NaN/Inf raise; finite values whose squares overflow go on
    low, high = torch.stack(torch.aminmax(x)).tolist()
    norm_bound = max(-low, high) * math.sqrt(dim)
    return 1.0 if norm_bound <= limit else 2.0 ** math.ceil(math.log2(norm_bound / limit))


class BaseDistance(nn.Module):
    """Pairwise (N×M) and paired (N) distances between embeddings.

    Subclasses write ``_pairwise(x, y) -> (n, m)`` and ``_paired(x, y) -> (n,)`` (and may prepare each input's
    rows once in ``_prepare``); this class checks shapes and values and chunks the rows so no call holds more than
    ``chunk_size × M`` temporaries (never N×M×D). Distances are computed in the promoted dtype of ``x`` and
    ``y``, at least float32 (:func:`computing_dtype`), with autocast off: float16/bfloat16 embeddings get
    float32 distances. Inputs so large that squares would overflow (row norms beyond 2⁶⁰ ≈ 1.2e18 in float32,
    :func:`overflow_scale`) are divided by a power of two first and the distances scaled back (``_rescaled``):
    they overflow only where the distance itself is beyond the dtype's range.

    ``is_inverted`` is True for similarities (larger = closer, e.g. cosine); code that compares an anchor's
    positive and negative uses :meth:`gap` so it works for both kinds.
    """

    is_inverted: bool = False

    def __init__(self, chunk_size: int = 4096) -> None:
        super().__init__()
        check_count(chunk_size, 1, "chunk_size")
        self.chunk_size = int(chunk_size)

    def _pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """An input's rows as ``_pairwise`` and ``_paired`` take them, given in the input's own dtype."""
        return x

    def _rescaled(self, values: torch.Tensor, scale: float) -> torch.Tensor:
        """The distances of the inputs from ``values``, those of the inputs divided by ``scale`` (a power of two):
        as they are for scale-invariant distances; subclasses whose values scale with the inputs override it."""
        return values

    def _checked(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``x`` and ``y`` after the checks, in the dtype the distances are computed in and divided by the returned
        :func:`overflow_scale` (1 unless they are huge)."""
        dx = check_shape(x, ["N", "D"], "x")["D"]
        dy = check_shape(y, ["M", "D"], "y")["D"]
        if dx != dy:
            raise ValueError(f"x and y must have the same embedding size D, got {dx} and {dy}")
        check_embedding_size(x, "x")
        check_floating(x, "x")
        check_floating(y, "y")
        check_same_device(x, y, "x", "y")
        dtype = computing_dtype(torch.promote_types(x.dtype, y.dtype))
        scale = overflow_scale(x, "x", dtype)
        if y is not x:
            scale = max(scale, overflow_scale(y, "y", dtype))
        if scale != 1.0:
            x, y = x / scale, y / scale
        return self._prepare(x).to(dtype), self._prepare(y).to(dtype), scale

    def pairwise(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, D), (M, D) → (N, M): entry (i, j) is d(x_i, y_j). ``y`` defaults to ``x``."""
        x, y, scale = self._checked(x, x if y is None else y)
        if x.shape[0] <= self.chunk_size:
            with no_autocast(x):
                values = self._pairwise(x, y)
            return values if scale == 1.0 else self._rescaled(values, scale)
        return torch.cat([block for _, block in self._blocks(x, y, scale)], dim=0)

    def iter_pairwise(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> Iterator[tuple[slice, torch.Tensor]]:
        """Yield ``(rows, block)`` with ``block = pairwise(x[rows], y)``: for N×M too large to hold at once."""
        yield from self._blocks(*self._checked(x, x if y is None else y))

    def _blocks(self, x: torch.Tensor, y: torch.Tensor, scale: float) -> Iterator[tuple[slice, torch.Tensor]]:
        for start in range(0, x.shape[0], self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, x.shape[0]))
            with no_autocast(x):  # not held across the yield: the caller's code keeps its autocast
                block = self._pairwise(x[rows], y)
            yield rows, block if scale == 1.0 else self._rescaled(block, scale)

    def paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, D), (N, D) → (N,): d(x_i, y_i)."""
        x, y, scale = self._checked(x, y)
        check_same_size(x.shape[0], y.shape[0], "x and y")
        with no_autocast(x):
            values = self._paired(x, y)
        return values if scale == 1.0 else self._rescaled(values, scale)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.pairwise(x, y)

    def gap(self, to_positive: torch.Tensor, to_negative: torch.Tensor) -> torch.Tensor:
        """How far the negative is from being ``margin`` worse than the positive: d(a,p) − d(a,n), or
        s(a,n) − s(a,p) for similarities. A triplet is violated with margin m when ``gap + m > 0``."""
        if self.is_inverted:
            return to_negative - to_positive
        return to_positive - to_negative

    def closer(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Elementwise: True where value ``a`` means closer than value ``b``."""
        return a > b if self.is_inverted else a < b

    def farness(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` oriented so that larger always means farther: distances as they are (the same tensor), minus
        similarities; ``gap(p, n) = farness(p) − farness(n)``."""
        return -values if self.is_inverted else values

    def same_as(self, other: "BaseDistance") -> bool:
        """Whether ``other`` computes the same values: same class and settings (``chunk_size`` aside)."""
        def settings(d: BaseDistance) -> dict:
            return {k: v for k, v in vars(d).items() if not k.startswith("_") and k not in ("training", "chunk_size")}

        return type(other) is type(self) and settings(other) == settings(self)
