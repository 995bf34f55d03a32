"""Test-time adaptation of the BatchNorm statistics to a group (AdaBN, with the training statistics as a prior).

A model trained on a few categories normalises its features with statistics of those categories; a group of a new
category has other feature statistics. Before a group is predicted, every BatchNorm layer's statistics (but those
a module keeps frozen in training: the semantic prior's ImageNet ones) become a blend of the training statistics and
the group's own, measured in forward passes over the group in which the BatchNorm layers normalise by the
statistics of the images they are given (as in training, where they normalise by the batch's):

    mean = w · mean_train + (1 − w) · mean_group,   var = w · var_train + (1 − w) · var_group,
    w = strength / (strength + n)   for a group of n images,

so a small group leans on the training statistics and a large one on its own. No gradients, no weights change;
the model's statistics are restored after the group.

A layer's group statistics are the mean and unbiased variance of its inputs over all the group's images, pooled
over the passes (each image counted once, whatever the passes' sizes). In one pass over the whole group they are
exactly the batch statistics the layers normalise by. When the group is measured in several passes (chunks, to bound
memory), each layer's statistics are still exact for its inputs, but a deeper layer's inputs come from earlier
layers that normalised each chunk by the chunk's own statistics, not by the group's (exactness through the network
would need one pass per layer, 62 for the default model).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from coseg.models.modes import in_mode


class GroupTooSmall(ValueError):
    """A group too small at its image size for its BatchNorm statistics to be measured (one image whose deepest
    feature map is 1×1: one value per channel)."""


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
    def adapted(self, model: nn.Module, measure: Callable[[], object], n: int,
                measured: Optional[int] = None) -> Iterator[None]:
        """Inside the block, ``model``'s BatchNorm layers (:func:`adaptable_layers`) hold the blend of
        their statistics and the group's, which ``measure()`` (forward passes over ``measured`` images of the
        group of ``n``, all of them by default) produces, and are in eval mode (a layer ``measure()`` does not run
        keeps its own statistics); on leaving, the statistics, momentum and modes are restored. Each layer pools the
        first ``measured`` images it is given: a pass that gives it the same images again (re-encoding them to
        decode in a group's context) does not count them twice."""
        layers = adaptable_layers(model)
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum,
                  m.training) for m in layers]
        weight = self.prior_weight(n)
        pools = [_Pool(n if measured is None else measured) for _ in layers]
        hooks = [m.register_forward_pre_hook(pool.add) for m, pool in zip(layers, pools)]
        try:
            with torch.no_grad():
                for m in layers:
                    m.reset_running_stats()
                    m.momentum = None  # the layer's own statistics of a single pass are its batch's
                    m.train()
                try:
                    measure()
                finally:
                    for hook in hooks:
                        hook.remove()
                for m, pool, (mean, var, *_) in zip(layers, pools, saved):
                    if pool.calls:
                        pool.store(m)
                        m.running_mean.mul_(1 - weight).add_(mean, alpha=weight)
                        m.running_var.mul_(1 - weight).add_(var, alpha=weight)
                    else:  # not measured: not blended with the reset statistics (mean 0, variance 1)
                        m.running_mean.copy_(mean)
                        m.running_var.copy_(var)
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


def adaptable_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that track running statistics and that ``model.train()`` puts in training
    mode: not those a module keeps frozen (the semantic prior's ImageNet statistics, whose class maps are meant not
    to drift). The modes of ``model``'s modules are left as they were."""
    with in_mode(model, True):
        return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats and m.training]


class _Pool:
    """Per-channel count, mean and sum of squared deviations (float64) of a BatchNorm layer's inputs (N, C, ...)
    over the first ``limit`` images it is given, pooled over calls (Chan et al.'s parallel update)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.images = self.calls = self.count = 0
        self.mean = self.squares = torch.zeros(())

    def add(self, layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        if self.images >= self.limit:
            return
        var, mean = torch.var_mean(x, dim=[0, *range(2, x.dim())], correction=0)
        count = x.numel() // x.shape[1]
        delta = mean.double() - self.mean
        total = self.count + count
        self.mean = self.mean + delta * (count / total)
        self.squares = self.squares + var.double() * count + delta ** 2 * (self.count * count / total)
        self.images, self.calls, self.count = self.images + x.shape[0], self.calls + 1, total

    def store(self, layer: _BatchNorm) -> None:
        """The pooled mean and unbiased variance into ``layer``'s running statistics, unless the layer ran once: its
        own statistics of that batch are then the same values, computed as a pass over the whole group does."""
        if self.calls and layer.num_batches_tracked > 1:
            layer.running_mean.copy_(self.mean)
            layer.running_var.copy_(self.squares / (self.count - 1))
