"""Registries: building components by name, and clear errors for arguments a component does not take."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import metric.losses  # noqa: F401  (the imports register the components)
import metric.samplers  # noqa: F401
from metric.distances import CosineSimilarity
from metric.losses import TripletMarginLoss
from metric.registry import BATCH_SAMPLERS, DISTANCES, LOSSES, MINERS, Registry


@pytest.mark.parametrize(
    "registry, name, kwargs, match",
    [
        (LOSSES, "global", {"reduction": "sum"}, r"loss 'global': got an unexpected keyword argument 'reduction' "
                                                 r"\(its arguments: distance, margin, lam, miner\)"),
        (DISTANCES, "cosine", {"squared": True}, r"distance 'cosine': got an unexpected keyword argument 'squared'"),
        (MINERS, "batch_hard", {"margin": 0.1}, r"miner 'batch_hard': got an unexpected keyword argument 'margin'"),
        (LOSSES, "soft_triple", {"embedding_size": 8}, r"loss 'soft_triple': missing a required argument: "
                                                       r"'num_classes'"),
        (LOSSES, "triplet_margin", {"margin": "0.2"}, r"loss 'triplet_margin': argument 'margin' must be float, "
                                                      r"got '0.2' \(str\)"),
        (LOSSES, "triplet_margin", {"distance": "cosine"}, r"argument 'distance' must be BaseDistance or None, "
                                                           r"got 'cosine' \(str\)"),
        (MINERS, "semi_hard", {"margin": True}, r"miner 'semi_hard': argument 'margin' must be float, got True"),
        (BATCH_SAMPLERS, "pk", {"labels": [0, 0, 1, 1], "classes_per_batch": 2, "samples_per_class": 2.0},
         r"batch sampler 'pk': argument 'samples_per_class' must be int, got 2.0 \(float\)"),
    ],
)
def test_bad_arguments_are_named(registry, name, kwargs, match):
    with pytest.raises(TypeError, match=match):
        registry.create(name, **kwargs)


def test_values_of_the_annotated_kinds_are_accepted():
    loss = LOSSES.create("triplet_margin", margin=0.5, distance=CosineSimilarity(), reduction="sum")
    assert isinstance(loss, TripletMarginLoss) and loss.margin == 0.5 and loss.distance.is_inverted
    assert MINERS.create("batch_all", margin=None).margin is None
    assert LOSSES.create("zero_mean", weight=1).weight == 1  # an int is a float
    assert len(BATCH_SAMPLERS.create("pk", labels=np.array([0, 0, 1, 1]), classes_per_batch=2,
                                     samples_per_class=2)) == 1
    sampler = BATCH_SAMPLERS.create("pk", labels=[0, 0, 1, 1], classes_per_batch=np.int32(2),
                                    samples_per_class=np.int64(2))  # numpy scalars: their Python values
    assert type(sampler.samples_per_class) is int and len(sampler) == 1
    class_margins = torch.zeros(2, 2)
    assert LOSSES.create("triplet_margin", class_margins=class_margins).class_margins is class_margins


def test_values_are_still_checked_by_the_components():
    with pytest.raises(ValueError, match="reduction must be one of"):
        LOSSES.create("triplet_margin", reduction="avg")


def test_factories_without_annotations_or_signature():
    registry: Registry = Registry("thing")
    registry.register("pair")(lambda a, b=2: (a, b))
    registry.register("dict")(dict)
    assert registry.create("pair", a="x") == ("x", 2)
    assert registry.create("dict", k=1) == {"k": 1}
    with pytest.raises(TypeError, match=r"thing 'pair': got an unexpected keyword argument 'c' "
                                        r"\(its arguments: a, b\)"):
        registry.create("pair", a=1, c=3)
    with pytest.raises(KeyError, match="unknown thing 'nope'; valid names: dict, pair"):
        registry.create("nope")


def test_an_empty_registry_says_which_import_fills_it():
    """Before ``import metric.losses`` the error listed "valid names: (none)" without saying why."""
    with pytest.raises(KeyError, match=r"unknown thing 'pair'; valid names: \(none yet: `import pkg.things` registers "
                                       r"them\)"):
        Registry("thing", "pkg.things").create("pair")
    for registry in (DISTANCES, LOSSES, MINERS, BATCH_SAMPLERS):
        assert registry.names() and registry.package in sys.modules
