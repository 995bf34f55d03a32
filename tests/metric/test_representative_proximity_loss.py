"""Proximity-to-representative regulariser: naive reference, sampler batches, edge cases, gradients, errors."""
from __future__ import annotations

import pytest
import torch

from metric.losses import RepresentativeProximityLoss, representative_proximity_loss
from metric.registry import DISTANCES, LOSSES
from metric.samplers import ClassRepresentativeBatchSampler
from tests.helpers import assert_close, gradcheck
from tests.reference import samplers as ref

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])
MASK = torch.tensor([True, False, False, False, True, False, False, False, True])  # class 2: no representative


@pytest.mark.parametrize("kind", ["euclidean", "squared_euclidean", "cosine", "snr"])
def test_matches_naive_reference(kind, dtype):
    emb = torch.randn(9, 4, dtype=dtype)
    out = representative_proximity_loss(emb, LABELS, MASK, DISTANCES.create(kind))
    expected = ref.proximity_losses(emb.double(), LABELS.tolist(), MASK.tolist(), kind)
    assert out.shape == (3,)  # two of class 0, one of class 1; class 2 has no representative
    assert_close(out, expected)


def test_on_a_class_representative_sampler_batch():
    labels = torch.arange(6).repeat_interleave(4)
    emb = torch.randn(24, 3)
    sampler = ClassRepresentativeBatchSampler(labels, 3, 4, batches_per_epoch=2)
    for batch in sampler:
        out = representative_proximity_loss(emb[batch], labels[batch], sampler.representative_mask)
        expected = ref.proximity_losses(emb[batch].double(), labels[batch].tolist(),
                                        sampler.representative_mask.tolist(), "euclidean")
        assert out.shape == (9,)
        assert_close(out, expected.float())


def test_module_matches_function_and_registry():
    emb = torch.randn(9, 4)
    module = LOSSES.create("representative_proximity", reduction="mean")
    assert isinstance(module, RepresentativeProximityLoss)
    assert_close(module(emb, LABELS, MASK), representative_proximity_loss(emb, LABELS, MASK).mean())


@pytest.mark.parametrize("mask", [torch.ones(9, dtype=torch.bool), torch.zeros(9, dtype=torch.bool)],
                         ids=["all", "none"])
def test_nothing_to_pull_gives_zero_with_gradient(mask):
    emb = torch.randn(9, 4, requires_grad=True)
    labels = torch.arange(9) if mask.all() else LABELS
    loss = RepresentativeProximityLoss()(emb, labels, mask)
    loss.backward()
    assert loss.item() == 0.0 and (emb.grad == 0).all()


@pytest.mark.parametrize("kind", ["euclidean", "cosine"])
def test_gradcheck(kind):
    distance = DISTANCES.create(kind)
    assert gradcheck(lambda x: representative_proximity_loss(x, LABELS, MASK, distance), [torch.randn(9, 4)])


def test_rejects_bad_inputs():
    emb = torch.randn(9, 4)
    with pytest.raises(ValueError, match="more than one representative"):
        representative_proximity_loss(emb, LABELS, MASK | (LABELS == 0))
    with pytest.raises(TypeError, match="bool"):
        representative_proximity_loss(emb, LABELS, MASK.long())
    with pytest.raises(ValueError, match="same length"):
        representative_proximity_loss(emb, LABELS[:8], MASK[:8])
    with pytest.raises(ValueError, match=r"representative_mask must be on the device of embeddings \(cpu\), got meta"):
        representative_proximity_loss(emb, LABELS, MASK.to("meta"))
    with pytest.raises(ValueError, match="embeddings holds 1 NaN"):
        representative_proximity_loss(torch.where(torch.arange(36).view(9, 4) == 5, float("nan"), emb), LABELS, MASK)
    with pytest.raises(ValueError, match="reduction"):
        RepresentativeProximityLoss(reduction="max")


def test_mean_nonzero_with_a_similarity_is_refused():
    """A similarity's losses (−cos) are < 0 within 90° of the representative: ``mean_nonzero`` averaged only the
    samples more than 90° away (0.9806 here, where the plain mean is −0.0145), so the pair is refused."""
    with pytest.raises(ValueError, match="'mean_nonzero' with the similarity CosineSimilarity"):
        RepresentativeProximityLoss(DISTANCES.create("cosine"), reduction="mean_nonzero")
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, 0.0], [-1.0, 0.2]])
    labels, mask = torch.tensor([0, 0, 1, 1]), torch.tensor([True, False, True, False])
    per_sample = RepresentativeProximityLoss(DISTANCES.create("cosine"), reduction="none")(emb, labels, mask)
    assert per_sample[0] < 0 < per_sample[1]
    euclidean = RepresentativeProximityLoss(reduction="mean_nonzero")(emb, labels, mask)
    assert_close(euclidean, torch.tensor(0.1 + 2.0099751) / 2)
