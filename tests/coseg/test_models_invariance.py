"""The model's promise on groups: an image's mask depends neither on the order of the other images of its group nor
on the chunks the group is processed in, nor on the other groups of a batch (in eval mode), for every inference
path; copies of an image get the same mask."""
import pytest
import torch

from coseg.models import CosegEnsemble, EdgeFilter, GroupRefinement, GroupStatistics, create_model
from coseg.models.cosegnet import reference_images
from tests.helpers import assert_close

TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


def group_model(seed: int = 0, std: float = 0.3, **kwargs):
    torch.manual_seed(seed)
    model = create_model("unet", encoder="tu-resnet18", weights=None, embedding_dim=4, group_levels=1, **kwargs)
    for module in model.group_consensus:  # fresh fusion layers are zero: make the group matter
        torch.nn.init.normal_(module.fuse[-1].weight, std=std)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return group_model()


def test_copies_of_an_image_get_the_same_mask_whichever_is_a_reference(model):
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        keys = model.group_consensus[0].keys(model.encode(x)[-1]).float()
    last = int(keys.double().sum(dim=(1, 2)).argmax())  # the last image in the references' content order
    group = torch.cat([x, x[last:last + 1]])  # ... twice: of two references, one of the copies is one
    model.max_references = 2
    try:
        with torch.inference_mode():
            taken = reference_images(model.group_consensus[0].keys(model.encode(group)[-1]).float(), 2).tolist()
        assert (last in taken) != (4 in taken)  # one copy is a reference, the other is not
        probs = model.predict_group(group, chunk_size=16)
        assert_close(probs[4], probs[last], **TOLERANCE)
        order = torch.tensor([4, 2, 0, 3, 1])  # the other copy first: it is the reference now
        assert_close(model.predict_group(group[order], chunk_size=2)[torch.argsort(order)], probs, **TOLERANCE)
    finally:
        model.max_references = 128


def test_an_ensemble_passes_its_reference_limit_to_its_members():
    members = [group_model(seed) for seed in (0, 1)]
    ensemble = CosegEnsemble(members).eval()
    assert ensemble.max_references == 128
    ensemble.max_references = 2  # was an attribute of the ensemble alone: the members still compared with 128
    assert [m.max_references for m in members] == [2, 2] and ensemble.max_references == 2
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    expected = torch.stack([m.predict_group(x, chunk_size=16) for m in members]).mean(0)
    assert_close(ensemble.predict_group(x, chunk_size=16), expected, **TOLERANCE)
    members[0].max_references = 128
    assert not torch.allclose(ensemble.predict_group(x, chunk_size=16), expected, atol=1e-4)


@pytest.fixture(scope="module")
def prior_model():
    return group_model(semantic_prior=True)


def run(model, path: str, x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    options = {"plain": {}, "refinement": {"refinement": GroupRefinement()}, "statistics": {"statistics":
               GroupStatistics()}, "edges": {"edges": EdgeFilter()}, "flip": {"flip": True}}[path]
    return model.predict_group(x, chunk_size=chunk_size, **options)


@pytest.mark.parametrize("path", ["plain", "refinement", "statistics", "edges", "flip"])
def test_an_image_gets_the_same_mask_in_any_order_and_any_chunks(prior_model, path):
    x = torch.rand(5, 3, 64, 96, generator=torch.Generator().manual_seed(2))  # not square
    whole = run(prior_model, path, x, 16)
    order = torch.tensor([3, 0, 4, 2, 1])
    assert_close(run(prior_model, path, x[order], 2)[torch.argsort(order)], whole, **TOLERANCE)
    alone = prior_model.predict(x)  # every image a group of one: the group matters
    assert not torch.allclose(whole, alone if path != "edges" else EdgeFilter()(alone, x), atol=1e-3)


def test_an_ensemble_in_any_order_and_any_chunks_is_its_members_mean(prior_model):
    ensemble = CosegEnsemble([prior_model, group_model(1)]).eval()
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    whole = ensemble.predict_group(x, chunk_size=16, flip=True)
    assert_close(whole, torch.stack([m.predict_group(x, chunk_size=16, flip=True) for m in ensemble.members]).mean(0),
                 **TOLERANCE)
    order = torch.tensor([4, 1, 3, 0, 2])
    assert_close(ensemble.predict_group(x[order], chunk_size=2, flip=True)[torch.argsort(order)], whole, **TOLERANCE)


def test_small_groups_and_an_image_twice(model):
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    one = model.predict_group(x[:1], chunk_size=1, flip=True, refinement=GroupRefinement())
    assert one.shape == (1, 1, 64, 64)
    assert_close(model.predict_group(x[:1]), model.predict(x[:1]), **TOLERANCE)  # a group of one: no group signal
    two = model.predict_group(x[:2], chunk_size=1)
    assert_close(model.predict_group(x[[1, 0]], chunk_size=16)[[1, 0]], two, **TOLERANCE)
    twice = model.predict_group(x[[0, 1, 2, 0]], chunk_size=3)
    assert_close(twice[3], twice[0], **TOLERANCE)


def test_the_other_groups_of_a_batch_do_not_matter_in_eval_mode(prior_model):
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    groups = torch.tensor([0, 1, 0, 1, 1])
    other = x.clone()
    other[[1, 3]] = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        a, b = prior_model(x, groups).mask_logits, prior_model(other, groups).mask_logits
        assert_close(b[[0, 2]], a[[0, 2]], **TOLERANCE)
        assert_close(prior_model(x[[2, 0]], torch.tensor([7, 7])).mask_logits, a[[2, 0]], **TOLERANCE)
        assert not torch.allclose(b[4], a[4], atol=1e-3)
    # in training, BatchNorm normalises by the whole batch's statistics: there, the other groups do matter
    trained = group_model()
    trained.train()
    a, b = trained(x, groups).mask_logits, trained(other, groups).mask_logits
    assert not torch.allclose(b[[0, 2]], a[[0, 2]], atol=1e-3)


def test_eval_is_deterministic_and_autocast_and_channels_last_agree(prior_model):
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    probs = prior_model.predict_group(x, chunk_size=3, refinement=GroupRefinement(), edges=EdgeFilter())
    assert torch.equal(prior_model.predict_group(x, chunk_size=3, refinement=GroupRefinement(), edges=EdgeFilter()),
                       probs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = prior_model.predict_group(x, chunk_size=3, refinement=GroupRefinement(), edges=EdgeFilter())
    assert_close(low.float(), probs, atol=2e-2, rtol=0)
    channels_last = group_model(semantic_prior=True).to(memory_format=torch.channels_last)
    assert_close(channels_last.predict_group(x.contiguous(memory_format=torch.channels_last), chunk_size=3,
                                             refinement=GroupRefinement(), edges=EdgeFilter()), probs, **TOLERANCE)
