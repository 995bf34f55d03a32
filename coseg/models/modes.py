"""Switching a model's train/eval mode for a block and putting every module's own mode back afterwards."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def in_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """``model.train(training)`` inside (the modules' own ``train`` overrides apply: the semantic prior stays in eval
    mode); after, every module's mode as it was (also a part the caller left in another mode than the model's, e.g. a
    decoder put in eval mode in training)."""
    modes = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode
