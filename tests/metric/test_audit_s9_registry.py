"""Registries take numpy scalars (a margin read from an array of settings) as the Python values they hold."""
from __future__ import annotations

import numpy as np
import pytest

import metric.losses  # noqa: F401  (the imports register the components)
import metric.miners  # noqa: F401
import metric.samplers  # noqa: F401
from metric.registry import BATCH_SAMPLERS, LOSSES, MINERS


@pytest.mark.parametrize("value", [np.float32(0.25), np.float16(0.5), np.float64(0.75)], ids=lambda v: type(v).__name__)
def test_a_numpy_float_is_taken_as_its_python_value(value):
    """``LOSSES.create("triplet_margin", margin=np.float32(0.2))`` raised "argument 'margin' must be float"."""
    loss = LOSSES.create("triplet_margin", margin=value)
    assert type(loss.margin) is float and loss.margin == float(value)
    assert MINERS.create("semi_hard", margin=value).margin == float(value)


def test_a_numpy_float_for_an_integer_argument_is_still_refused():
    with pytest.raises(TypeError, match=r"argument 'num_classes' must be int, got 3.0 \(float\)"):
        LOSSES.create("soft_triple", num_classes=np.float32(3), embedding_size=4)


def test_a_numpy_bool_is_taken_as_its_python_value():
    """``drop_last=np.False_`` was refused as "must be bool, got np.False_ (bool)"."""
    sampler = BATCH_SAMPLERS.create("pk", labels=[0, 0, 0, 1, 1, 1], classes_per_batch=2, samples_per_class=2,
                                    drop_last=np.bool_(False))
    assert sampler.drop_last is False and len(sampler) == 2
