"""Test-time adaptation of the BatchNorm statistics to a group (AdaBN, with the training statistics as a prior).

A model trained on a few categories normalises its features with statistics of those categories; a group of a new
category has other feature statistics. Before a group is predicted, every BatchNorm layer's statistics become a
blend of the training statistics and the group's own, measured in one forward pass over the group in which the
BatchNorm layers normalise by the group's statistics (as in training, where they normalise by the batch's):

    mean = w · mean_train + (1 − w) · mean_group,   var = w · var_train + (1 − w) · var_group,
    w = strength / (strength + n)   for a group of n images,

so a small group leans on the training statistics and a large one on its own. No gradients, no weights change;
the model's statistics are restored after the group.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@dataclass(frozen=True)
class GroupStatistics:
    """Blend each BatchNorm layer's statistics with the group's: ``strength`` = how many images the training
    statistics count for (the prior weight is ``strength / (strength + n)`` for a group of ``n`` images; 0 = the
    group's statistics alone)."""

    strength: float = 8.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise ValueError(f"group statistics strength must be a finite number >= 0, got {self.strength}")

    def prior_weight(self, n: int) -> float:
        """Weight of the training statistics for a group of ``n`` >= 1 images."""
        if n < 1:
            raise ValueError(f"a group has at least one image, got {n}")
        return self.strength / (self.strength + n)

    @contextmanager
    def adapted(self, model: nn.Module, measure: Callable[[], object], n: int) -> Iterator[None]:
        """Inside the block, ``model``'s BatchNorm layers (those that track running statistics) hold the blend of
        their statistics and those that ``measure()`` (forward passes over the group's ``n`` images) produces, and
        are in eval mode; on leaving, the statistics, momentum and modes are restored."""
        layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum,
                  m.training) for m in layers]
        weight = self.prior_weight(n)
        try:
            with torch.no_grad():
                for m in layers:
                    m.reset_running_stats()
                    m.momentum = None  # a cumulative average over the passes of ``measure``
                    m.train()
                measure()
                for m, (mean, var, *_) in zip(layers, saved):
                    m.running_mean.mul_(1 - weight).add_(mean, alpha=weight)
                    m.running_var.mul_(1 - weight).add_(var, alpha=weight)
                    m.eval()
            yield
        finally:
            with torch.no_grad():
                for m, (mean, var, count, momentum, training) in zip(layers, saved):
                    m.running_mean.copy_(mean)
                    m.running_var.copy_(var)
                    m.num_batches_tracked.copy_(count)
                    m.momentum = momentum
                    m.train(training)
