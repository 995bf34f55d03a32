"""Exponential moving average of a model's weights (and BatchNorm statistics), updated after every optimiser step.

The averaged copy is the model the engine validates and saves: its validation score moves less from epoch to epoch
than the raw weights', so picking the best epoch on a few validation groups is less of a lottery."""
from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_decay_at(decay: float, updates: int) -> float:
    """Decay used for update number ``updates`` (0 = the first after the copy): ``min(decay, (1 + n) / (10 + n))``.

    The warm-up keeps the average's horizon at about a ninth of the steps seen, so early epochs are not dominated by
    the initial weights; it reaches ``decay`` after ``(10 decay - 1) / (1 - decay)`` updates."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


def weight_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An :class:`~torch.optim.swa_utils.AveragedModel` of ``model`` holding ``ema = d·ema + (1 - d)·weights``
    with ``d = ema_decay_at(decay, n)``; integer buffers (BatchNorm's batch counters) are copied.
    Call ``update_parameters(model)`` after each optimiser step (the first call copies); the average is ``.module``,
    in eval mode."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"EMA decay must be in (0, 1), got {decay}")

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():
            for a, c in zip(averaged, current):
                a.copy_(c)
            return
        weight = 1.0 - ema_decay_at(decay, int(n_averaged) - 1)  # n_averaged counts the initial copy
        torch._foreach_lerp_(averaged, current, weight)

    ema = AveragedModel(model, multi_avg_fn=update, use_buffers=True)
    ema.requires_grad_(False)
    return ema.eval()  # never trained: dropout off, BatchNorm statistics come from the average
