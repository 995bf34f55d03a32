"""``--loss-lr`` is the learning rate of a loss's own parameters (SoftTriple's centres): set for a loss that has none
(triplet_margin, global, triplet_upper_bound, whose centroids are fixed) it trained exactly as without it. It is
refused as the other unused method options are, before any image is read (the command: in
tests/apps/test_audit_s14_unused_sampler_options.py)."""
from __future__ import annotations

import pytest
import torch

from apps.retrieval.components import build_components
from apps.retrieval.config import RetrievalTrainConfig
from coseg.engine import ConfigError

LABELS = torch.arange(4).repeat_interleave(3)


@pytest.mark.parametrize("loss", ["triplet_margin", "global", "triplet_upper_bound"])
def test_a_learning_rate_for_a_loss_without_parameters_is_refused(loss: str) -> None:
    with pytest.raises(ConfigError, match=f"^--loss-lr set but not used by loss '{loss}', miner 'none' or sampler "
                                          "'pk'$"):
        build_components(RetrievalTrainConfig(loss=loss, loss_lr=0.5, classes_per_batch=2), LABELS, 4)


@pytest.mark.parametrize("changes", [{"loss": "soft_triple", "loss_lr": 0.5}, {"loss_lr": 0.01}])  # the default
def test_the_learning_rate_of_softtriples_centres_and_the_default_are_taken(changes: dict) -> None:
    assert build_components(RetrievalTrainConfig(classes_per_batch=2, **changes), LABELS, 4)
