"""Pixel sampling for pixel-level triplets: K pixels per class per image, uniformly or favouring hard pixels."""
from __future__ import annotations

from typing import Literal, NamedTuple, Optional

import torch
import torch.nn.functional as F

from metric._checks import check_count, check_finite, check_same_device, check_shape

Strategy = Literal["random", "hard"]
STRATEGIES = ("random", "hard")

# Log-weight given to zero-weight pixels: finite, so they are still drawn once every weighted pixel is taken.
_LOG_FLOOR = -1e4


class PixelSample(NamedTuple):
    """Sampled pixels, each a LongTensor of shape (S,), ordered by image, then class, then draw order.

    ``index`` is flat into (B·H·W): pixel (b, h, w) has index ``(b·H + h)·W + w``.
    """

    index: torch.Tensor
    label: torch.Tensor
    image: torch.Tensor


def _window_max(x: torch.Tensor, width: int) -> torch.Tensor:
    """(B, H, W) float → max over each (2·width+1)² window, as two 1-D pools (several times faster than a 2-D
    max pool on CPU); borders see only the pixels inside the image."""
    size = 2 * width + 1
    rows = F.max_pool1d(x, size, stride=1, padding=width)
    return F.max_pool1d(rows.transpose(1, 2), size, stride=1, padding=width).transpose(1, 2)


def is_ignored(labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """``labels == ignore_index`` (same shape, bool) compared as integers, where torch would cast the index to the
    labels' dtype first (255 to int8 −1, −1 to uint8 255) and so ignore a real class: an index the dtype cannot
    hold matches no pixel."""
    if not labels.is_floating_point():
        held = (0, 1) if labels.dtype == torch.bool else (torch.iinfo(labels.dtype).min, torch.iinfo(labels.dtype).max)
        if not held[0] <= ignore_index <= held[1]:
            return torch.zeros_like(labels, dtype=torch.bool)
    return labels == ignore_index


def boundary_mask(labels: torch.Tensor, width: int = 2, ignore_index: int = 255) -> torch.Tensor:
    """(B, H, W) labels → (B, H, W) bool: valid pixels with a pixel of another valid class at Chebyshev distance
    ≤ ``width`` (the band on both sides of every class boundary; ``ignore_index`` pixels are no class).
    Pooled in float64, exact for class ids below 2⁵³ in magnitude (float32 merged ids from 2²⁴ on)."""
    valid = ~is_ignored(labels, ignore_index)
    values = labels.to(torch.float64)
    highest = _window_max(torch.where(valid, values, -float("inf")), width)
    lowest = -_window_max(torch.where(valid, -values, -float("inf")), width)
    return valid & ((highest != values) | (lowest != values))


def pixel_hardness(
    labels: torch.Tensor,
    probabilities: Optional[torch.Tensor] = None,
    boundary_width: int = 2,
    ignore_index: int = 255,
) -> torch.Tensor:
    """(B, H, W) hardness in [0, 2]: 1 on the boundary band (:func:`boundary_mask`) plus, when foreground
    ``probabilities`` are given, the prediction error ``|p − label|`` (labels 0/1); 0 on ``ignore_index`` pixels."""
    hardness = boundary_mask(labels, boundary_width, ignore_index).to(torch.float32)
    if probabilities is not None:
        error = (probabilities.to(torch.float32) - labels.to(torch.float32)).abs()
        hardness = hardness + error.masked_fill(is_ignored(labels, ignore_index), 0.0)
    return hardness


def check_sampling(k_per_class: int, strategy: str, random_share: float, boundary_width: int) -> None:
    """Raise ``ValueError`` naming the first invalid pixel-sampling setting."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got '{strategy}'")
    check_count(k_per_class, 1, "k_per_class")
    if not 0.0 <= random_share <= 1.0:
        raise ValueError(f"random_share must lie in [0, 1], got {random_share}")
    check_count(boundary_width, 1, "boundary_width")


def _check_inputs(labels: torch.Tensor, probabilities: Optional[torch.Tensor], ignore_index: int) -> None:
    check_shape(labels, ["B", "H", "W"], "labels")
    if labels.is_floating_point():
        raise TypeError("labels must be an integer tensor of class ids")
    if probabilities is None:
        return
    check_shape(probabilities, ["B", "H", "W"], "probabilities")
    if probabilities.shape != labels.shape:
        raise ValueError(
            f"probabilities {tuple(probabilities.shape)} and labels {tuple(labels.shape)} must have the same shape"
        )
    check_same_device(labels, probabilities, "labels", "probabilities")
    check_finite(probabilities, "probabilities")
    if bool(((probabilities < 0) | (probabilities > 1)).any()):
        raise ValueError("probabilities must lie in [0, 1] (foreground probabilities: apply sigmoid to logits)")
    if bool(((labels != 0) & (labels != 1) & ~is_ignored(labels, ignore_index)).any()):
        raise ValueError("probabilities are foreground probabilities, so labels must be 0/1 (or ignore_index)")


def present_classes(labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Sorted distinct class ids (int64) in ``labels`` (any shape), ``ignore_index`` left out."""
    if not labels.numel():  # amin of nothing is an error
        return labels.new_empty(0, dtype=torch.long)
    low, high = int(labels.amin()), int(labels.amax())
    if high - low < 65536:  # a histogram is several times faster than torch.unique's sort
        if labels.is_signed() and labels.element_size() < 4:  # int8/int16: labels − low could overflow
            labels = labels.int()
        classes = torch.bincount((labels - low).flatten(), minlength=high - low + 1).nonzero().flatten() + low
    else:
        classes = torch.unique(labels).long()
    return classes[classes != ignore_index]


@torch.no_grad()
def sample_pixels(
    labels: torch.Tensor,
    k_per_class: int,
    strategy: Strategy = "random",
    probabilities: Optional[torch.Tensor] = None,
    random_share: float = 0.5,
    boundary_width: int = 2,
    ignore_index: int = 255,
    generator: Optional[torch.Generator] = None,
) -> PixelSample:
    """Sample up to ``k_per_class`` distinct pixels of every class in every image of ``labels (B, H, W)``.

    ``ignore_index`` pixels are never sampled; a class with fewer than K pixels in an image gives all of them.
    ``"random"``: uniform without replacement. ``"hard"``: without replacement from the mixture
    ``random_share · uniform + (1 − random_share) · hardness-proportional`` within the (image, class), where
    hardness is :func:`pixel_hardness` (boundary band of ``boundary_width`` pixels, plus the error of the optional
    foreground ``probabilities (B, H, W)``, which ``"random"`` ignores); the uniform share keeps it from
    collapsing onto a few pixels. One Gumbel-top-k per class, vectorised over the batch. ``generator`` (on the
    labels' device) makes it reproducible. Boolean ``labels`` are a foreground mask: classes 0 and 1.
    """
    check_sampling(k_per_class, strategy, random_share, boundary_width)
    _check_inputs(labels, probabilities, ignore_index)
    if labels.dtype == torch.bool:
        labels = labels.long()
    b, h, w = labels.shape
    flat = labels.reshape(b, h * w)
    classes = present_classes(flat, ignore_index)
    if not classes.numel():  # no image, no pixel or only ignore_index: nothing to sample
        empty = torch.empty(0, dtype=torch.long, device=labels.device)
        return PixelSample(empty, empty.clone(), empty.clone())
    # Gumbel noise: top-k of log(weight) + Gumbel draws k without replacement with probability ∝ weight.
    uniform = torch.rand(flat.shape, generator=generator, device=labels.device).clamp_(min=1e-12, max=1 - 1e-7)
    gumbel = -torch.log(-torch.log(uniform))
    if strategy == "hard":
        hardness = pixel_hardness(labels, probabilities, boundary_width, ignore_index).reshape(b, h * w)
    k = min(k_per_class, h * w)
    picked, kept = [], []
    for c in classes.tolist():
        member = flat == c
        keys = gumbel
        if strategy == "hard":
            count = member.sum(1, keepdim=True).clamp(min=1)
            total = (hardness * member).sum(1, keepdim=True)
            share = torch.where(total > 0, hardness / total.clamp(min=1e-12), 1.0 / count)
            keys = gumbel + torch.log(random_share / count + (1 - random_share) * share).clamp(min=_LOG_FLOOR)
        top = torch.topk(torch.where(member, keys, -float("inf")), k, dim=1).indices
        picked.append(top)
        kept.append(member.gather(1, top))
    pixel = torch.stack(picked, 1)  # (B, C, k)
    keep = torch.stack(kept, 1)
    image = torch.arange(b, device=labels.device).view(b, 1, 1).expand_as(pixel)
    label = classes.view(1, -1, 1).expand_as(pixel)
    return PixelSample((image * (h * w) + pixel)[keep], label[keep], image[keep])
