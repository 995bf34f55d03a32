"""Triplet margin loss: naive-loop reference, function vs module, pytorch-metric-learning, ATL margins, edges."""
from __future__ import annotations

import importlib

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers

from metric.distances import CosineSimilarity, EuclideanDistance, SNRDistance
from metric.losses import TripletMarginLoss, triplet_margin_loss
from metric.miners import BatchAllMiner, BatchHardMiner, SemiHardMiner, TripletIndices
from metric.miners.batch_all import all_valid_triplets
from metric.reduction import reduce_loss
from metric.registry import DISTANCES, LOSSES
from tests.helpers import assert_close, gradcheck
from tests.reference import triplet as ref

KINDS = ["euclidean", "squared_euclidean", "cosine", "snr"]
LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 3])


def as_list(triplets: TripletIndices) -> list[tuple[int, int, int]]:
    return list(zip(*(index.tolist() for index in triplets)))


@pytest.mark.parametrize("kind", KINDS)
def test_function_matches_reference(kind, dtype, device):
    emb = torch.randn(9, 5, dtype=dtype, device=device)
    triplets = all_valid_triplets(LABELS.to(device))
    losses = triplet_margin_loss(emb, triplets, 0.4, DISTANCES.create(kind))
    assert losses.shape == (len(triplets),) and losses.dtype == dtype
    expected = ref.triplet_losses(emb.cpu(), as_list(triplets), 0.4, kind)
    assert_close(losses, expected)
    assert (expected > 0).any() and (expected == 0).any()  # both sides of the hinge are exercised


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero", "none"])
def test_module_agrees_with_function(kind, reduction):
    emb = torch.randn(9, 5, dtype=torch.float64)
    distance = DISTANCES.create(kind)
    losses = triplet_margin_loss(emb, all_valid_triplets(LABELS), 0.2, distance)
    module = TripletMarginLoss(margin=0.2, distance=distance, reduction=reduction)
    expected = {"mean": losses.mean(), "sum": losses.sum(), "mean_nonzero": losses[losses > 0].mean(), "none": losses}
    assert_close(module(emb, LABELS), expected[reduction])


def test_module_uses_given_triplets_or_its_miner():
    emb = torch.randn(9, 5, dtype=torch.float64)
    hard = BatchHardMiner()(emb, LABELS)
    by_miner = TripletMarginLoss(margin=0.3, miner=BatchHardMiner(), reduction="none")(emb, LABELS)
    given = TripletMarginLoss(margin=0.3, reduction="none")(emb, LABELS, triplets=hard)
    assert_close(by_miner, given)
    assert_close(given, ref.triplet_losses(emb, as_list(hard), 0.3, "euclidean"))
    assert len(TripletMarginLoss(margin=0.3, reduction="none")(emb, LABELS)) == len(ref.all_triplets(LABELS))


def test_registry_builds_the_module():
    loss = LOSSES.create("triplet_margin", margin=0.5, distance=CosineSimilarity())
    assert isinstance(loss, TripletMarginLoss) and loss.margin == 0.5 and loss.distance.is_inverted
    assert isinstance(TripletMarginLoss().distance, EuclideanDistance)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (EuclideanDistance(), pml_distances.LpDistance(normalize_embeddings=False)),
        (CosineSimilarity(), pml_distances.CosineSimilarity()),
        (SNRDistance(), pml_distances.SNRDistance(normalize_embeddings=False)),
        (EuclideanDistance(squared=True), pml_distances.LpDistance(power=2, normalize_embeddings=False)),
    ],
    ids=["euclidean", "cosine", "snr", "squared_euclidean"],
)
def test_matches_pytorch_metric_learning_on_the_same_triplets(ours, theirs):
    emb = torch.randn(9, 6, dtype=torch.float64)
    triplets = all_valid_triplets(LABELS)
    reducers = {"mean": pml_reducers.MeanReducer(), "mean_nonzero": pml_reducers.AvgNonZeroReducer()}
    for reduction, reducer in reducers.items():
        pml_loss = pml_losses.TripletMarginLoss(margin=0.3, distance=theirs, reducer=reducer)
        expected = pml_loss(emb, LABELS, tuple(triplets))
        actual = TripletMarginLoss(margin=0.3, distance=ours, reduction=reduction)(emb, LABELS, triplets)
        assert actual > 0  # active triplets: two zeros would agree whatever was computed
        assert_close(actual, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind):
    emb, labels = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 0, 1, 1, 2])
    triplets = all_valid_triplets(labels)
    distance = DISTANCES.create(kind)
    assert gradcheck(lambda e: triplet_margin_loss(e, triplets, 1.0, distance), (emb,))
    assert gradcheck(lambda e: TripletMarginLoss(margin=1.0, distance=distance)(e, labels), (emb,))


@pytest.mark.parametrize(
    "labels", [torch.arange(6), torch.zeros(6, dtype=torch.long)], ids=["one_sample_per_class", "all_one_class"]
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero"])
def test_no_valid_triplet_gives_zero_loss_that_backpropagates(labels, reduction):
    emb = torch.randn(6, 3, requires_grad=True)
    loss = TripletMarginLoss(reduction=reduction)(emb, labels)
    assert loss.item() == 0.0
    loss.backward()
    assert emb.grad is not None and (emb.grad == 0).all()


def test_empty_triplets_give_empty_losses_attached_to_the_graph():
    emb = torch.randn(4, 3, requires_grad=True)
    losses = triplet_margin_loss(emb, TripletIndices.empty(), 0.1, EuclideanDistance())
    assert losses.shape == (0,) and losses.requires_grad


def test_class_margins_match_reference(dtype):
    emb = torch.randn(9, 5, dtype=dtype)
    class_margins = torch.rand(4, 4, dtype=dtype)
    triplets = all_valid_triplets(LABELS)
    losses = triplet_margin_loss(emb, triplets, 0.0, EuclideanDistance(), LABELS, class_margins)
    expected = ref.triplet_losses(emb, as_list(triplets), 0.0, "euclidean", LABELS, class_margins)
    assert_close(losses, expected)
    module = TripletMarginLoss(class_margins=class_margins, reduction="none")
    assert_close(module(emb, LABELS), expected)
    assert "class_margins" in module.state_dict()


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_class_margins_index_with_labels_of_any_integer_dtype(dtype):
    emb, class_margins = torch.randn(9, 5), torch.rand(4, 4)
    module = TripletMarginLoss(class_margins=class_margins, reduction="none")
    assert_close(module(emb, LABELS.to(dtype)), module(emb, LABELS))  # uint8 indices would be read as a mask


def test_class_margins_gradcheck():
    triplets = all_valid_triplets(LABELS)
    class_margins = torch.rand(4, 4, dtype=torch.float64) + 0.5
    fn = lambda e: triplet_margin_loss(e, triplets, 0.0, CosineSimilarity(), LABELS, class_margins)  # noqa: E731
    assert gradcheck(fn, (torch.randn(9, 4),))


def test_invalid_inputs_raise_clear_errors():
    emb = torch.randn(9, 5)
    triplets = all_valid_triplets(LABELS)
    with pytest.raises(ValueError, match="embeddings holds 1 NaN"):
        TripletMarginLoss()(torch.cat([emb[:-1], torch.tensor([[0.0, float("nan"), 0.0, 0.0, 0.0]])]), LABELS)
    with pytest.raises(ValueError, match="embeddings holds"):
        triplet_margin_loss(torch.full((9, 5), float("inf")), triplets, 0.1, EuclideanDistance())
    with pytest.raises(ValueError, match="needs labels"):
        triplet_margin_loss(emb, triplets, 0.1, EuclideanDistance(), class_margins=torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\) \(they index class_margins of shape "
                                         r"\(3, 3\)\), got \[0, 3\]"):
        triplet_margin_loss(emb, triplets, 0.1, EuclideanDistance(), LABELS, torch.ones(3, 3))
    with pytest.raises(ValueError, match="class_margins must have shape"):
        TripletMarginLoss(class_margins=torch.ones(4, 3))
    with pytest.raises(ValueError, match="triplets.anchor and triplets.negative"):
        short = TripletIndices(triplets.anchor, triplets.positive, triplets.negative[:-1])
        triplet_margin_loss(emb, short, 0.1, EuclideanDistance())
    with pytest.raises(TypeError, match="integer"):
        TripletMarginLoss()(emb, LABELS.float())


@pytest.mark.parametrize("kind", KINDS)
def test_pair_table_and_per_triplet_paths_agree(kind, monkeypatch):
    """Many triplets (T > N) read d(a, p), d(a, n) from a table of all ordered pairs; few, or a table over the
    memory cap, compute them per triplet. Both give the same losses and gradients."""
    module = importlib.import_module("metric.losses.triplet_margin_loss")  # the package exports a same-named function
    distance = DISTANCES.create(kind)
    emb = torch.randn(9, 5, dtype=torch.float64)
    triplets = all_valid_triplets(LABELS)
    assert len(triplets) > len(emb)

    def losses_and_grad():
        x = emb.clone().requires_grad_(True)
        losses = triplet_margin_loss(x, triplets, 0.4, distance)
        losses.sum().backward()
        return losses.detach(), x.grad

    table = losses_and_grad()
    monkeypatch.setattr(module, "_uses_pair_table", lambda *sizes: False)
    per_triplet = losses_and_grad()
    assert_close(table[0], per_triplet[0])
    assert_close(table[1], per_triplet[1])
    assert (table[0] > 0).any()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("miner", ["semi_hard", "batch_all_margin"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero"])
def test_reduced_loss_from_pair_counts_equals_the_listed_triplets(kind, miner, reduction, monkeypatch):
    """With a miner whose triplets all have a positive loss, the module sums the loss from the miner's pair counts
    (never listing the triplets): the same value and gradient as the per-triplet losses reduced."""
    distance = DISTANCES.create(kind)
    make = {"semi_hard": lambda: SemiHardMiner(margin=0.5, distance=distance),
            "batch_all_margin": lambda: BatchAllMiner(distance, margin=0.3)}[miner]
    emb = torch.randn(16, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.arange(4).repeat(4)
    triplets = make()(emb, labels)
    listed = reduce_loss(triplet_margin_loss(emb, triplets, 0.5, distance), reduction)
    expected_grad, = torch.autograd.grad(listed, emb)
    module = TripletMarginLoss(margin=0.5, distance=distance, miner=make(), reduction=reduction)
    monkeypatch.setattr(module.miner, "mine", lambda *a: pytest.fail("the reduced loss listed its triplets"))
    counted = module(emb, labels)
    grad, = torch.autograd.grad(counted, emb)
    assert len(triplets) > 0 and listed > 0
    assert_close(counted, listed)
    assert_close(grad, expected_grad)


def test_listing_stays_where_counts_do_not_give_the_loss():
    """Given triplets, per-class-pair margins, a miner margin above the loss margin, or no reduction: listed."""
    emb, labels = torch.randn(16, 5, dtype=torch.float64), torch.arange(4).repeat(4)
    miner = SemiHardMiner(margin=0.5)
    triplets = miner(emb, labels)
    losses = triplet_margin_loss(emb, triplets, 0.3, EuclideanDistance())
    assert (losses == 0).any()  # gaps in (−0.5, −0.3] clip to 0: a count would be wrong here
    assert_close(TripletMarginLoss(margin=0.3, miner=miner)(emb, labels), losses.mean())
    assert_close(TripletMarginLoss(margin=0.3, miner=miner, reduction="mean_nonzero")(emb, labels),
                 losses[losses > 0].mean())
    assert_close(TripletMarginLoss(margin=0.5, miner=miner, reduction="none")(emb, labels),
                 triplet_margin_loss(emb, triplets, 0.5, EuclideanDistance()))
    margins = torch.full((4, 4), 0.3)  # the per-pair margins replace the loss margin (0.5, which would allow counting)
    assert_close(TripletMarginLoss(margin=0.5, miner=miner, class_margins=margins)(emb, labels), losses.mean())


def test_reduce_positive_sum():
    from metric.reduction import reduce_positive_sum

    total = torch.tensor(6.0)
    assert reduce_positive_sum(total, 3, "sum") == 6.0
    assert reduce_positive_sum(total, 3, "mean") == reduce_positive_sum(total, 3, "mean_nonzero") == 2.0
    assert reduce_positive_sum(torch.tensor(0.0), 0, "mean") == 0.0
    with pytest.raises(ValueError, match="per-item losses"):
        reduce_positive_sum(total, 3, "none")
