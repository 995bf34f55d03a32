"""Global pooling of a backbone's feature map into one vector per image: average, or GeM with a learnable power."""
from __future__ import annotations

import torch
from torch import nn

from metric._checks import check_shape
from metric.registry import Registry

POOLINGS: Registry[nn.Module] = Registry("pooling")


def check_map(x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is a feature map (B, C, h, w) with h, w ≥ 1 (there is no mean of nothing)."""
    sizes = check_shape(x, ["B", "C", "h", "w"], "feature map")
    if not sizes["h"] or not sizes["w"]:
        raise ValueError(f"feature map must have h, w >= 1 to be pooled, got shape {tuple(x.shape)}")


@POOLINGS.register("avg")
class AvgPool(nn.Module):
    """(B, C, h, w) → (B, C): mean over the spatial positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_map(x)
        return x.mean(dim=(-2, -1))


@POOLINGS.register("gem")
class GeM(nn.Module):
    """(B, C, h, w) → (B, C): generalised mean ``(mean_hw max(x, eps)^p)^(1/p)`` with a learnable power ``p``
    (Radenović et al. 2018): p = 1 is the average, p → ∞ the maximum. Values below ``eps`` count as ``eps``, so a
    signed map (an intermediate stage of many backbones, e.g. EfficientNet's linear bottlenecks: about half its
    values negative) is pooled by its positive part alone. Computed in float32 (float64 maps in float64)
    relative to each channel's maximum, so powers neither overflow (large p or activations, AMP) nor underflow (small
    ones)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        if not (p > 0 and eps > 0):  # NaN fails too
            raise ValueError(f"GeM needs p > 0 and eps > 0, got p={p}, eps={eps}")
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_map(x)
        dtype = torch.promote_types(x.dtype, torch.float32)
        p = self.p.to(dtype)
        x = x.to(dtype).clamp(min=self.eps)
        peak = x.detach().amax(dim=(-2, -1), keepdim=True)  # (B, C, 1, 1); GeM is homogeneous: gem(x) = m·gem(x/m)
        return (x / peak).pow(p).mean(dim=(-2, -1)).pow(1.0 / p) * peak[..., 0, 0]
