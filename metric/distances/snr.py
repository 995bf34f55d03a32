"""Signal-to-noise-ratio distance of DSML (Yuan et al., CVPR 2019). Not symmetric."""
from __future__ import annotations

import math

import torch

from metric.distances.base_distance import BaseDistance
from metric.distances.euclidean import pairwise_squared_euclidean
from metric.registry import DISTANCES


def _centred(x: torch.Tensor) -> torch.Tensor:
    """Rows minus their means; a constant row becomes exactly 0 (its mean may round off the constant)."""
    constant = (x.amax(1, keepdim=True) == x.amin(1, keepdim=True)).detach()
    return (x - x.mean(1, keepdim=True)).masked_fill(constant, 0)


def _upscaled(xc: torch.Tensor, yc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred ``xc`` and ``yc`` times one power of two (exact; their ratios do not change): 1 unless their largest
    magnitude is below 2⁻²¹, else the one bringing it into [0.5, 1). Without it, rows of norm ~1e-30 had squared
    spreads that underflow float32: distances 0 instead of their scale-invariant values, and NaN gradients."""
    largest = [t.detach().abs().amax() for t in (xc, yc) if t.numel()]
    if not largest:
        return xc, yc
    exponent = torch.frexp(torch.stack(largest).amax()).exponent  # 0 for 0; no device sync
    most = int(math.log2(torch.finfo(xc.dtype).max)) - 1  # 2^most stays finite (subnormal inputs)
    factor = torch.exp2(torch.where(exponent < -20, -exponent, 0).clamp(max=most).to(xc.dtype))  # exact
    return xc * factor, yc * factor


def _ratio(noise: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
    """noise / signal (broadcast), at most 1/eps: a constant anchor has no signal, so its distances are that
    largest value (without gradient) instead of a division by zero, and 0 where the noise is 0 too. Both powers
    scale alike, so the ratio stays scale-invariant (a fixed floor on the signal swamped small embeddings) while
    the squared spreads stay normal numbers (rows whose spread is below ~1e-19 in float32 underflow)."""
    floor = noise * torch.finfo(noise.dtype).eps
    return noise / torch.maximum(signal, floor).clamp(min=torch.finfo(noise.dtype).tiny)


@DISTANCES.register("snr")
class SNRDistance(BaseDistance):
    """d_S(x_i, y_j) = var(y_j − x_i) / var(x_i): noise power over the anchor's signal power (unitless).

    ``x`` is the anchor (as in pytorch-metric-learning's ``SNRDistance``, whose query is the anchor). The
    variance correction (population or unbiased) cancels in the ratio, so there is no option for it.
    Pairwise, var(y − x)·D = ‖(y − ȳ) − (x − x̄)‖², i.e. the expansion
    (‖x‖² + ‖y‖² − 2xᵀy)/D − (x̄ − ȳ)² evaluated on centred rows (less round-off), with one matmul
    and never an N×M×D tensor. A constant anchor (no variance) is 1/eps away from every row that does not differ
    from it by a constant.
    """

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < 2:  # one value has no variance: every distance would be 0
            raise ValueError(f"SNR distances need embeddings of size D >= 2, got shape {tuple(x.shape)}")
        return x

    def _pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xc, yc = _upscaled(_centred(x), _centred(y))
        signal = xc.pow(2).sum(1, keepdim=True)
        # A constant anchor's noise is exactly ‖y − ȳ‖²: the expansion's round-off (~eps·‖ȳ‖², which
        # depends on the BLAS) would give the 1/eps of a nonzero noise where both rows are constant.
        noise = torch.where(signal == 0, yc.pow(2).sum(1), pairwise_squared_euclidean(xc, yc))
        return _ratio(noise, signal)

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xc, yc = _upscaled(_centred(x), _centred(y))
        return _ratio((yc - xc).pow(2).sum(1), xc.pow(2).sum(1))
