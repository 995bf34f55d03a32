"""Signal-to-noise-ratio distance of DSML (Yuan et al., CVPR 2019). Not symmetric."""
from __future__ import annotations

import torch

from metric.distances.base_distance import BaseDistance
from metric.distances.euclidean import pairwise_squared_euclidean
from metric.registry import DISTANCES


def _centred(x: torch.Tensor) -> torch.Tensor:
    """Rows minus their means; a constant row becomes exactly 0 (its mean may round off the constant)."""
    constant = (x.amax(1, keepdim=True) == x.amin(1, keepdim=True)).detach()
    return (x - x.mean(1, keepdim=True)).masked_fill(constant, 0)


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
    variance correction (population or unbiased) cancels in the ratio, so there is no option for it. Pairwise,
    var(y − x)·D = ‖(y − ȳ) − (x − x̄)‖², i.e. the expansion (‖x‖² + ‖y‖² − 2xᵀy)/D − (x̄ − ȳ)² evaluated on
    centred rows (less round-off), with one matmul and never an N×M×D tensor. A constant anchor (no variance) is
    1/eps away from every row that does not differ from it by a constant.
    """

    def _pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xc, yc = _centred(x), _centred(y)
        signal = xc.pow(2).sum(1, keepdim=True)
        # A constant anchor's noise is exactly ‖y − ȳ‖²: the expansion's round-off (~eps·‖ȳ‖², which depends on the
        # BLAS) would give the 1/eps of a nonzero noise where both rows are constant.
        noise = torch.where(signal == 0, yc.pow(2).sum(1), pairwise_squared_euclidean(xc, yc))
        return _ratio(noise, signal)

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xc = _centred(x)
        return _ratio((_centred(y) - xc).pow(2).sum(1), xc.pow(2).sum(1))
