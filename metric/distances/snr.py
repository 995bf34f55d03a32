"""Signal-to-noise-ratio distance of DSML (Yuan et al., CVPR 2019). Not symmetric."""
from __future__ import annotations

import torch

from metric.distances.base_distance import BaseDistance
from metric.distances.euclidean import pairwise_squared_euclidean
from metric.registry import DISTANCES


def _centred(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(1, keepdim=True)


def _signal_power(x_centred: torch.Tensor) -> torch.Tensor:
    # A constant anchor has no variance: floor it at eps instead of dividing by zero.
    return x_centred.pow(2).sum(1).clamp(min=torch.finfo(x_centred.dtype).eps)


@DISTANCES.register("snr")
class SNRDistance(BaseDistance):
    """d_S(x_i, y_j) = var(y_j − x_i) / var(x_i): noise power over the anchor's signal power (unitless).

    ``x`` is the anchor (as in pytorch-metric-learning's ``SNRDistance``, whose query is the anchor). The
    variance correction (population or unbiased) cancels in the ratio, so there is no option for it. Pairwise,
    var(y − x)·D = ‖(y − ȳ) − (x − x̄)‖², i.e. the expansion (‖x‖² + ‖y‖² − 2xᵀy)/D − (x̄ − ȳ)² evaluated on
    centred rows (less round-off), with one matmul and never an N×M×D tensor.
    """

    def _pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xc = _centred(x)
        return pairwise_squared_euclidean(xc, _centred(y)) / _signal_power(xc).unsqueeze(1)

    def _paired(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xc = _centred(x)
        return (_centred(y) - xc).pow(2).sum(1) / _signal_power(xc)
