"""Distance objects: one triplet body serves Euclidean, cosine and SNR through them."""
from __future__ import annotations

import contextlib
from typing import ContextManager, Iterator, Optional

import torch
from torch import nn

from metric._checks import check_finite, check_floating, check_same_device, check_same_size, check_shape


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


class BaseDistance(nn.Module):
    """Pairwise (N×M) and paired (N) distances between embeddings.

    Subclasses write ``_pairwise(x, y) -> (n, m)`` and ``_paired(x, y) -> (n,)`` (and may prepare each input's
    rows once in ``_prepare``); this class checks shapes and values and chunks the rows so no call holds more than
    ``chunk_size × M`` temporaries (never N×M×D). Distances are computed in the promoted dtype of ``x`` and
    ``y``, at least float32 (:func:`computing_dtype`), with autocast off: float16/bfloat16 embeddings get
    float32 distances.

    ``is_inverted`` is True for similarities (larger = closer, e.g. cosine); code that compares an anchor's
    positive and negative uses :meth:`gap` so it works for both kinds.
    """

    is_inverted: bool = False

    def __init__(self, chunk_size: int = 4096) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size

    def _pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """An input's rows as ``_pairwise`` and ``_paired`` take them, given in the input's own dtype."""
        return x

    def _checked(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` and ``y`` after the checks, in the dtype the distances are computed in."""
        dx = check_shape(x, ["N", "D"], "x")["D"]
        dy = check_shape(y, ["M", "D"], "y")["D"]
        if dx != dy:
            raise ValueError(f"x and y must have the same embedding size D, got {dx} and {dy}")
        check_floating(x, "x")
        check_floating(y, "y")
        check_same_device(x, y, "x", "y")
        check_finite(x, "x")
        check_finite(y, "y")
        dtype = computing_dtype(torch.promote_types(x.dtype, y.dtype))
        return self._prepare(x).to(dtype), self._prepare(y).to(dtype)

    def pairwise(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, D), (M, D) → (N, M): entry (i, j) is d(x_i, y_j). ``y`` defaults to ``x``."""
        x, y = self._checked(x, x if y is None else y)
        if x.shape[0] <= self.chunk_size:
            with no_autocast(x):
                return self._pairwise(x, y)
        return torch.cat([block for _, block in self._blocks(x, y)], dim=0)

    def iter_pairwise(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> Iterator[tuple[slice, torch.Tensor]]:
        """Yield ``(rows, block)`` with ``block = pairwise(x[rows], y)``: for N×M too large to hold at once."""
        x, y = self._checked(x, x if y is None else y)
        yield from self._blocks(x, y)

    def _blocks(self, x: torch.Tensor, y: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
        for start in range(0, x.shape[0], self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, x.shape[0]))
            with no_autocast(x):  # not held across the yield: the caller's code keeps its autocast
                block = self._pairwise(x[rows], y)
            yield rows, block

    def paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, D), (N, D) → (N,): d(x_i, y_i)."""
        x, y = self._checked(x, y)
        check_same_size(x.shape[0], y.shape[0], "x and y")
        with no_autocast(x):
            return self._paired(x, y)

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
