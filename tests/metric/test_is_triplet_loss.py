"""IS-Triplet pixel loss: naive reference, group extension, empty cases, gradients, PML, errors."""
from __future__ import annotations

import importlib

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from metric.distances import CosineSimilarity, EuclideanDistance
from metric.losses import ISTripletLoss, is_triplet_loss
from metric.losses.is_triplet_loss import pixel_triplets
from metric.losses.triplet_margin_loss import counts_suffice
from metric.miners import BatchAllMiner, BatchHardMiner, SemiHardMiner, sample_pixels
from metric.reduction import reduce_loss
from metric.registry import DISTANCES, LOSSES
from tests.helpers import assert_close, gradcheck
from tests.reference import pixel as ref
from tests.reference import triplet as triplet_ref


def masks(b: int = 4, size: int = 6) -> torch.Tensor:
    labels = torch.zeros(b, size, size, dtype=torch.long)
    for i in range(b):
        labels[i, 1 + i % 2 : 4 + i % 2, 2:5] = 1
    labels[:, 0, 0] = 255
    return labels


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", ["euclidean", "cosine", "snr"])
@pytest.mark.parametrize("groups", [None, torch.tensor([0, 1, 0, 1])], ids=["per_image", "groups"])
@pytest.mark.parametrize("strategy", ["random", "hard"])
def test_matches_naive_reference(kind, groups, strategy):
    emb = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    labels = masks()
    probabilities = torch.rand(labels.shape)
    out = is_triplet_loss(
        emb, labels, margin=0.3, k_per_class=5, groups=groups, distance=DISTANCES.create(kind),
        strategy=strategy, probabilities=probabilities, generator=seeded(1),
    )
    sample = sample_pixels(labels, 5, strategy, probabilities, generator=seeded(1))
    expected = ref.is_triplet_losses(
        emb, sample.index.tolist(), sample.label.tolist(), sample.image.tolist(),
        None if groups is None else groups.tolist(), 0.3, kind,
    )
    assert out.shape == (sample.index.numel(),)  # every sampled pixel has a positive and a negative here
    assert_close(out.sort().values, expected.sort().values)  # triplets come pool by pool, not anchor by anchor


def test_group_triplets_stay_in_their_group_and_cross_images():
    labels = masks(b=4)
    groups = torch.tensor([7, 3, 7, 3])
    sample = sample_pixels(labels, 6, "random", generator=seeded(2))
    emb = torch.randn(sample.index.numel(), 3)
    emb[sample.image >= 2] += 5.0  # images 2 and 3 are far away: the hardest positive lies in the other image
    a, p, n = pixel_triplets(emb, sample.label, groups[sample.image], BatchHardMiner())
    assert len(a) == sample.index.numel()
    assert torch.equal(groups[sample.image[a]], groups[sample.image[p]])
    assert torch.equal(groups[sample.image[a]], groups[sample.image[n]])
    assert (sample.label[a] == sample.label[p]).all() and (sample.label[a] != sample.label[n]).all()
    assert (sample.image[a] != sample.image[p]).float().mean() > 0.9
    per_image = pixel_triplets(emb, sample.label, sample.image, BatchHardMiner())
    assert torch.equal(sample.image[per_image.anchor], sample.image[per_image.positive])


def test_miner_sees_one_image_or_group_at_a_time():
    sizes = []

    class Spy(BatchHardMiner):
        def mine(self, embeddings, labels):
            sizes.append(embeddings.shape[0])
            return super().mine(embeddings, labels)

    emb = torch.randn(4, 3, 6, 6)
    is_triplet_loss(emb, masks(), k_per_class=4, miner=Spy())
    assert sizes == [8, 8, 8, 8]
    sizes.clear()
    is_triplet_loss(emb, masks(), k_per_class=4, miner=Spy(), groups=torch.tensor([0, 0, 1, 1]))
    assert sizes == [16, 16]


@pytest.mark.parametrize("groups", [None, torch.tensor([0, 0])], ids=["per_image", "groups"])
def test_one_class_everywhere_gives_zero_loss_with_gradient(groups):
    emb = torch.randn(2, 3, 6, 6, requires_grad=True)
    labels = torch.zeros(2, 6, 6, dtype=torch.long)
    labels[1, :2] = 255
    loss = ISTripletLoss(k_per_class=8)(emb, labels, groups=groups)
    assert loss.item() == 0.0
    loss.backward()
    assert emb.grad is not None and (emb.grad == 0).all()


def test_image_with_one_class_adds_no_triplet_unless_its_group_has_another_class():
    labels = masks(b=2)
    labels[1] = 0
    emb = torch.randn(2, 3, 6, 6)
    alone = is_triplet_loss(emb, labels, k_per_class=4, generator=seeded())
    grouped = is_triplet_loss(emb, labels, k_per_class=4, groups=torch.tensor([0, 0]), generator=seeded())
    assert alone.numel() == 8 and grouped.numel() == 12


def test_all_ignored_gives_zero_loss_with_gradient():
    emb = torch.randn(2, 3, 5, 5, requires_grad=True)
    loss = ISTripletLoss()(emb, torch.full((2, 5, 5), 255))
    loss.backward()
    assert loss.item() == 0.0 and (emb.grad == 0).all()


@pytest.mark.parametrize("groups", [None, torch.tensor([0, 0])], ids=["per_image", "groups"])
@pytest.mark.parametrize("distance", [EuclideanDistance(), CosineSimilarity()], ids=["euclidean", "cosine"])
def test_gradcheck(groups, distance):
    labels = masks(b=2)
    emb = torch.randn(2, 3, 6, 6, dtype=torch.float64)

    def fn(x):
        return is_triplet_loss(x, labels, margin=0.5, k_per_class=6, groups=groups, distance=distance,
                               generator=seeded(4)).sum()

    assert fn(emb) > 0  # some triplets are active, so the gradient is not trivially 0
    assert gradcheck(fn, [emb], fast_mode=True)


def test_module_matches_function_and_registry():
    emb, labels, probabilities = torch.randn(4, 3, 6, 6), masks(), torch.rand(4, 6, 6)
    module = LOSSES.create("is_triplet", margin=0.3, k_per_class=5, strategy="hard", reduction="sum")
    assert isinstance(module, ISTripletLoss)
    torch.manual_seed(9)
    value = module(emb, labels, probabilities=probabilities)
    torch.manual_seed(9)
    expected = is_triplet_loss(emb, labels, margin=0.3, k_per_class=5, probabilities=probabilities).sum()
    assert_close(value, expected)


def test_matches_pytorch_metric_learning_on_one_image():
    emb, labels = torch.randn(1, 4, 8, 8), masks(b=1, size=8)
    ours = ISTripletLoss(margin=0.2, k_per_class=10, strategy="random", reduction="mean_nonzero")
    torch.manual_seed(3)
    value = ours(emb, labels)
    torch.manual_seed(3)
    sample = sample_pixels(labels, 10, "random")
    rows = emb.permute(0, 2, 3, 1).reshape(-1, 4)[sample.index]
    distance = pml_distances.LpDistance(normalize_embeddings=False)
    triplets = pml_miners.BatchHardMiner(distance=distance)(rows, sample.label)
    expected = pml_losses.TripletMarginLoss(margin=0.2, distance=distance)(rows, sample.label, triplets)
    assert_close(value, expected)


@pytest.mark.parametrize("groups", [None, torch.tensor([0, 0])], ids=["per_image", "groups"])
def test_semi_hard_miner_option_matches_naive_reference(groups):
    emb, labels = torch.randn(2, 3, 6, 6, dtype=torch.float64), masks(b=2)
    losses = is_triplet_loss(emb, labels, margin=0.5, k_per_class=6, groups=groups, miner=SemiHardMiner(margin=0.5),
                             generator=seeded(7))
    sample = sample_pixels(labels, 6, "random", generator=seeded(7))
    rows = torch.tensor(ref.gather(emb, sample.index.tolist()), dtype=torch.float64)
    pools = (sample.image if groups is None else groups[sample.image]).tolist()
    expected = []
    for pool in sorted(set(pools)):  # semi-hard triplets (a, p, n) within each pool, by loops
        members = [i for i, q in enumerate(pools) if q == pool]
        triplets = triplet_ref.semi_hard(rows[members], sample.label[members], "euclidean", 0.5)
        expected += triplet_ref.triplet_losses(rows[members], triplets, 0.5, "euclidean").tolist()
    assert len(expected) > 0 and ((losses > 0) & (losses < 0.5)).all()
    assert_close(losses.sort().values, torch.tensor(sorted(expected), dtype=torch.float64))


MARGIN_MINERS = {
    "semi_hard": lambda d: SemiHardMiner(margin=0.3, distance=d),
    "batch_all_margin": lambda d: BatchAllMiner(d, margin=0.2),
}


@pytest.mark.parametrize("kind", ["euclidean", "cosine", "snr"])
@pytest.mark.parametrize("miner", sorted(MARGIN_MINERS))
@pytest.mark.parametrize("groups", [None, torch.tensor([0, 1, 0, 1])], ids=["per_image", "groups"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero"])
def test_reduced_loss_from_pair_counts_equals_the_listed_triplets(kind, miner, groups, reduction, monkeypatch):
    """Semi-hard and margin batch-all triplets all have a positive loss: the reduced loss is summed from the
    miner's pair counts without listing the triplets, with the same value and gradient."""
    emb = torch.randn(4, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    labels, distance = masks(), DISTANCES.create(kind)
    kwargs = dict(margin=0.3, k_per_class=6, groups=groups, distance=distance,
                  miner=MARGIN_MINERS[miner](distance))
    listed = reduce_loss(is_triplet_loss(emb, labels, generator=seeded(5), **kwargs), reduction)
    expected_grad, = torch.autograd.grad(listed, emb)

    def no_listing(*args, **kw):
        raise AssertionError("the reduced loss listed its triplets")

    # the package exports the function is_triplet_loss under the module's name: fetch the module itself
    monkeypatch.setattr(importlib.import_module("metric.losses.is_triplet_loss"), "pixel_triplets", no_listing)
    counted = is_triplet_loss(emb, labels, generator=seeded(5), reduction=reduction, **kwargs)
    grad, = torch.autograd.grad(counted, emb)
    assert listed > 0
    assert_close(counted, listed)
    assert_close(grad, expected_grad)


def test_pair_counts_only_where_every_mined_triplet_has_a_positive_loss():
    euclidean = EuclideanDistance()
    assert counts_suffice(SemiHardMiner(margin=0.3), 0.3, euclidean)
    assert counts_suffice(SemiHardMiner(margin=0.3), 0.5, EuclideanDistance(chunk_size=8))
    assert counts_suffice(BatchAllMiner(margin=0.2), 0.3, euclidean)
    assert not counts_suffice(SemiHardMiner(margin=0.3), 0.2, euclidean)  # gaps in (−0.3, −0.2] would clip to 0
    assert not counts_suffice(BatchAllMiner(), 0.3, euclidean)  # every valid triplet, also those of zero loss
    assert not counts_suffice(BatchHardMiner(), 0.3, euclidean)
    assert not counts_suffice(SemiHardMiner(margin=0.3), 0.3, CosineSimilarity())
    assert not counts_suffice(SemiHardMiner(margin=0.3), 0.3, EuclideanDistance(squared=True))


@pytest.mark.parametrize("groups", [None, torch.tensor([0, 0])], ids=["per_image", "groups"])
def test_gradcheck_of_the_counted_loss(groups):
    labels = masks(b=2)
    emb = torch.randn(2, 3, 6, 6, dtype=torch.float64)

    def fn(x):
        return is_triplet_loss(x, labels, margin=0.5, k_per_class=6, groups=groups, miner=SemiHardMiner(0.5),
                               generator=seeded(4), reduction="sum")

    assert fn(emb) > 0
    assert gradcheck(fn, [emb], fast_mode=True)


@pytest.mark.parametrize("labels", [torch.full((2, 5, 5), 255), torch.zeros(2, 5, 5, dtype=torch.long)],
                         ids=["all_ignored", "one_class"])
def test_counted_loss_without_triplets_is_zero_with_gradient(labels):
    emb = torch.randn(2, 3, 5, 5, requires_grad=True)
    loss = ISTripletLoss(margin=0.3, miner=SemiHardMiner(margin=0.3))(emb, labels, groups=torch.tensor([0, 0]))
    loss.backward()
    assert loss.item() == 0.0 and (emb.grad == 0).all()


def test_boolean_masks_are_classes_0_and_1():
    emb, labels = torch.randn(2, 3, 6, 6, requires_grad=True), masks(b=2, size=6) > 0
    assert labels.any() and not labels.all()
    loss = is_triplet_loss(emb, labels, reduction="sum", generator=seeded())
    assert_close(loss, is_triplet_loss(emb, labels.long(), reduction="sum", generator=seeded()))
    loss.backward()
    assert emb.grad.abs().sum() > 0


def test_rejects_bad_inputs():
    emb, labels = torch.randn(2, 3, 6, 6), masks(b=2)
    with pytest.raises(ValueError, match=r"embeddings must have shape \(B, D, H, W\)"):
        is_triplet_loss(emb[0], labels)
    with pytest.raises(ValueError, match="resize"):
        is_triplet_loss(emb, masks(b=2, size=5))
    with pytest.raises(ValueError, match="resize"):
        is_triplet_loss(emb, masks(b=3))
    with pytest.raises(ValueError, match="groups"):
        is_triplet_loss(emb, labels, groups=torch.tensor([0, 0, 1]))
    with pytest.raises(TypeError, match="groups"):
        is_triplet_loss(emb, labels, groups=torch.tensor([0.0, 1.0]))
    bad = emb.clone()
    bad[1, 2, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="embeddings holds 1 NaN"):
        is_triplet_loss(bad, labels)
    with pytest.raises(ValueError, match="reduction"):
        ISTripletLoss(reduction="max")
    with pytest.raises(ValueError, match="reduction"):
        is_triplet_loss(emb, labels, reduction="max")
    with pytest.raises(ValueError, match="k_per_class"):
        ISTripletLoss(k_per_class=0)


@pytest.mark.parametrize("shape", [(0, 3, 6, 6), (2, 3, 0, 6)], ids=["no_image", "no_pixel"])
@pytest.mark.parametrize("strategy", ["random", "hard"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero", "none"])
def test_empty_batch_gives_zero_loss_with_gradient(shape, strategy, reduction):
    emb = torch.randn(*shape, requires_grad=True)
    labels = torch.zeros(shape[0], *shape[2:], dtype=torch.long)
    loss = ISTripletLoss(k_per_class=4, strategy=strategy, reduction=reduction)(emb, labels)
    assert loss.shape == ((0,) if reduction == "none" else ())
    assert loss.sum() == 0
    loss.sum().backward()
    assert emb.grad.shape == emb.shape


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_float16_pixel_embeddings_beyond_256_give_the_float32_loss_of_their_values(memory_format):
    # ‖x‖² of such pixels overflowed float16: NaN distances, NaN loss
    emb = (300 * torch.randn(2, 8, 6, 6)).half().contiguous(memory_format=memory_format).requires_grad_(True)
    labels = masks(b=2)
    loss = is_triplet_loss(emb, labels, reduction="mean", generator=seeded())
    assert loss.dtype == torch.float32
    assert_close(loss, is_triplet_loss(emb.detach().float(), labels, reduction="mean", generator=seeded()),
                 rtol=1e-4, atol=1e-4)
    assert torch.isfinite(torch.autograd.grad(loss, emb)[0]).all()


def test_labels_and_probabilities_on_another_device_are_refused():
    emb, labels = torch.randn(2, 3, 6, 6), masks(b=2)
    with pytest.raises(ValueError, match=r"labels must be on the device of embeddings \(cpu\), got meta"):
        is_triplet_loss(emb, labels.to("meta"))
    with pytest.raises(ValueError, match=r"probabilities must be on the device of labels \(cpu\), got meta"):
        is_triplet_loss(emb, labels.clamp(max=1), probabilities=torch.rand(2, 6, 6, device="meta"))
    with pytest.raises(TypeError, match="embeddings must be a floating-point tensor"):
        is_triplet_loss(emb.long(), labels)
