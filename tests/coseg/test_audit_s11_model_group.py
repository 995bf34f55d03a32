"""The group-aware model on awkward batches: groups of 1, 2 and 4 with arbitrary ids in one batch at two consensus
levels with the semantic prior, channels_last in training, a single reference image, and group refinement's
documented effect."""
import copy

import pytest
import torch
import torch.nn.functional as F

from coseg.models import GroupRefinement, create_model
from tests.helpers import assert_close

TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


def group_model(**kwargs):
    torch.manual_seed(0)
    model = create_model("unet", encoder="tu-resnet18", weights=None, embedding_dim=4, **kwargs)
    for module in model.group_consensus:  # fresh fusion layers are zero: make the group matter
        torch.nn.init.normal_(module.fuse[-1].weight, std=0.3)
    return model.eval()


@pytest.fixture(scope="module")
def prior_model():
    return group_model(group_levels=2, semantic_prior=True)


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_groups_of_one_two_and_four_in_one_batch_are_each_their_own_group(prior_model):
    x = images(7, 0)
    groups = torch.tensor([3, -1, 3, 9, -1, 3, 3])  # unsorted, negative, non-contiguous ids
    with torch.inference_mode():
        out = prior_model(x, groups)
        for gid in (3, -1, 9):
            members = torch.nonzero(groups == gid).flatten()
            alone = prior_model(x[members], torch.zeros(len(members), dtype=torch.long))
            assert_close(out.mask_logits[members], alone.mask_logits, **TOLERANCE)
            assert_close(out.embeddings[members], alone.embeddings, **TOLERANCE)
        perm = torch.tensor([5, 1, 6, 0, 3, 2, 4])
        shuffled = prior_model(x[perm], groups[perm])
        assert_close(shuffled.mask_logits, out.mask_logits[perm], **TOLERANCE)
        assert_close(shuffled.embeddings, out.embeddings[perm], **TOLERANCE)
        other = x.clone()
        other[[1, 4]] = images(2, 1)  # group -1 changes
        changed = prior_model(other, groups).mask_logits
        assert torch.equal(changed[groups != -1], out.mask_logits[groups != -1])
        assert not torch.allclose(changed[groups == -1], out.mask_logits[groups == -1], atol=1e-3)
        assert torch.equal(prior_model(x).mask_logits, prior_model(x, torch.arange(7)).mask_logits)


def test_channels_last_gives_the_same_outputs_in_training_mode(prior_model):
    model = copy.deepcopy(prior_model).train()
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x, groups = images(4, 2), torch.tensor([0, 0, 1, 1])
    a = model(x, groups)
    b = channels_last(x.contiguous(memory_format=torch.channels_last), groups)
    assert_close(b.mask_logits, a.mask_logits, atol=1e-4, rtol=1e-4)  # batch statistics sum in another order
    assert_close(b.embeddings, a.embeddings, atol=1e-4, rtol=1e-4)
    assert model.training and not model.semantic_prior.training
    model.eval()
    with torch.inference_mode():
        assert torch.equal(model(x, groups).mask_logits, model(x, groups).mask_logits)


def test_with_one_reference_the_reference_gets_no_group_signal_and_the_order_does_not_matter():
    """max_references=1: each image is compared with one image of the group; that image has no other to compare
    with, so (without a semantic prior) its mask is its mask alone."""
    model = group_model(group_levels=1)
    x = images(5, 3)
    model.max_references = 1
    probs = model.predict_group(x, chunk_size=2)
    reference = int(model.group_context(x.split(2)).plain.positions[0])
    assert_close(probs[reference], model.predict(x[reference:reference + 1])[0], **TOLERANCE)
    others = [i for i in range(5) if i != reference]
    assert not torch.allclose(probs[others], model.predict(x[others]), atol=1e-3)
    perm = torch.tensor([3, 0, 4, 2, 1])
    assert_close(model.predict_group(x[perm], chunk_size=3), probs[perm], **TOLERANCE)


@pytest.mark.parametrize("refinement", [GroupRefinement(iterations=0, weight=5.0), GroupRefinement(3, 0.0)])
def test_refinement_without_iterations_or_weight_changes_nothing(refinement):
    model = group_model(group_levels=1)
    x = images(3, 4)
    assert torch.equal(model.predict_group(x, refinement=refinement), model.predict_group(x))
    logits = torch.randn(3, 1, 16, 16).bfloat16()
    out = refinement(logits, F.normalize(torch.randn(3, 4, 4, 4), dim=1))
    assert out.dtype == torch.bfloat16 and torch.equal(out, logits)


def test_refinement_pulls_pixels_towards_the_group_prototype_of_their_embedding():
    """Pixels whose embedding is that of the group's (mostly predicted) foreground become foreground, and those
    whose embedding is the background's become background, whatever the model's logits said about them."""
    u, v = torch.eye(4)[0], torch.eye(4)[1]
    truth = torch.zeros(3, 1, 16, 16, dtype=torch.bool)
    truth[..., 4:12, 4:12] = True
    embeddings = torch.where(truth, u[None, :, None, None], v[None, :, None, None])  # at the logits' size
    logits = torch.where(truth, 1.0, -1.0)
    logits[0, 0, 4:8, 4:8] = -0.5  # foreground the model missed
    logits[1, 0, 0:4, 0:4] = 0.5  # background it took for foreground
    refined = GroupRefinement(iterations=2, weight=2.0)(logits, embeddings)
    assert torch.equal(refined > 0, truth)
    assert (refined[truth] > logits[truth]).all() and (refined[~truth] < logits[~truth]).all()
