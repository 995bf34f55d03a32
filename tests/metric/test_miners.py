"""Triplet miners: naive-loop references, pytorch-metric-learning's miners, edge cases."""
from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.utils import loss_and_miner_utils as pml_utils

from metric.distances import CosineSimilarity, EuclideanDistance, SNRDistance
from metric.miners import BaseTripletMiner, BatchAllMiner, BatchHardMiner, SemiHardMiner, TripletIndices
from metric.miners.batch_all import all_valid_triplets
from metric.registry import DISTANCES, MINERS
from tests.reference import triplet as ref

KINDS = ["euclidean", "squared_euclidean", "cosine", "snr"]
# Every registered triplet miner (the registry also holds pixel samplers with another interface).
TRIPLET_MINERS = [
    name
    for name in MINERS.names()
    if isinstance(MINERS.get(name), type) and issubclass(MINERS.get(name), BaseTripletMiner)
]
# pytorch-metric-learning distances equal to ours: (ours, theirs); PML's Lp distance must not normalise.
PML_PAIRS = [
    (EuclideanDistance(), pml_distances.LpDistance(normalize_embeddings=False)),
    (CosineSimilarity(), pml_distances.CosineSimilarity()),
    (EuclideanDistance(squared=True), pml_distances.LpDistance(power=2, normalize_embeddings=False)),
    (SNRDistance(), pml_distances.SNRDistance(normalize_embeddings=False)),
]
PML_IDS = ["euclidean", "cosine", "squared_euclidean", "snr"]


def as_list(triplets) -> list[tuple[int, int, int]]:
    return list(zip(*(index.tolist() for index in triplets)))


def by_anchor_class(triplets: list[tuple[int, int, int]], labels: torch.Tensor) -> list[tuple[int, int, int]]:
    """The order of the margin-based miners: the anchor's class, then (a, p, n)."""
    return sorted(triplets, key=lambda t: (int(labels[t[0]]), t))


def batch(n: int = 12, d: int = 4, classes: int = 3, dtype: torch.dtype = torch.float64):
    return torch.randn(n, d, dtype=dtype), torch.randint(0, classes, (n,))


def test_all_valid_triplets_matches_reference_in_order():
    for labels in (torch.tensor([0, 1, 0, 2, 1, 0, 2]), torch.randint(0, 4, (15,)), torch.tensor([5, 5, 9])):
        assert as_list(all_valid_triplets(labels)) == ref.all_triplets(labels)


def test_all_valid_triplets_match_pytorch_metric_learning():
    labels = torch.randint(0, 4, (15,))
    expected = as_list(pml_utils.get_all_triplets_indices(labels))
    assert len(expected) > 0 and sorted(as_list(BatchAllMiner()(torch.randn(15, 3), labels))) == sorted(expected)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("margin", [None, 0.0, 0.3])
def test_batch_all_matches_reference(kind, margin):
    emb, labels = batch()
    mined = as_list(BatchAllMiner(DISTANCES.create(kind), margin=margin)(emb, labels))
    expected = ref.batch_all(emb, labels, kind, margin)
    assert mined == (expected if margin is None else by_anchor_class(expected, labels))


@pytest.mark.parametrize("kind", KINDS)
def test_batch_hard_matches_reference(kind):
    emb, labels = batch()
    labels[0] = 7  # an anchor with no positive is skipped
    assert as_list(BatchHardMiner(DISTANCES.create(kind))(emb, labels)) == ref.batch_hard(emb, labels, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_semi_hard_matches_reference(kind):
    emb, labels = batch()
    mined = as_list(SemiHardMiner(margin=0.5, distance=DISTANCES.create(kind))(emb, labels))
    assert mined == by_anchor_class(ref.semi_hard(emb, labels, kind, 0.5), labels)
    assert mined  # not vacuous


@pytest.mark.parametrize("ours, theirs", PML_PAIRS, ids=PML_IDS)
def test_batch_hard_matches_pytorch_metric_learning(ours, theirs):
    emb, labels = batch(n=16, d=6, classes=4, dtype=torch.float32)
    labels[0] = 9
    expected = pml_miners.BatchHardMiner(distance=theirs)(emb, labels)
    assert sorted(as_list(BatchHardMiner(ours)(emb, labels))) == sorted(as_list(expected))


@pytest.mark.parametrize("ours, theirs", PML_PAIRS, ids=PML_IDS)
def test_semi_hard_matches_pytorch_metric_learning(ours, theirs):
    emb, labels = batch(n=16, d=6, classes=4, dtype=torch.float32)
    expected = pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets="semihard", distance=theirs)(emb, labels)
    mined = as_list(SemiHardMiner(margin=0.3, distance=ours)(emb, labels))
    assert mined and sorted(mined) == sorted(as_list(expected))


@pytest.mark.parametrize("ours, theirs", PML_PAIRS, ids=PML_IDS)
def test_batch_all_with_margin_matches_pytorch_metric_learning(ours, theirs):
    emb, labels = batch(n=16, d=6, classes=4, dtype=torch.float32)
    expected = pml_miners.TripletMarginMiner(margin=0.3, type_of_triplets="all", distance=theirs)(emb, labels)
    mined = as_list(BatchAllMiner(ours, margin=0.3)(emb, labels))
    assert mined and sorted(mined) == sorted(as_list(expected))


@pytest.mark.parametrize("name", TRIPLET_MINERS)
@pytest.mark.parametrize("labels", [torch.arange(6), torch.zeros(6, dtype=torch.long)], ids=["singletons", "one_class"])
def test_no_valid_triplet_gives_empty_indices(name, labels):
    mined = MINERS.create(name)(torch.randn(6, 3), labels)
    assert isinstance(mined, TripletIndices) and len(mined) == 0
    assert all(index.dtype == torch.long for index in mined)


@pytest.mark.parametrize("name", TRIPLET_MINERS)
def test_an_empty_batch_gives_empty_indices(name):
    mined = MINERS.create(name)(torch.randn(0, 3), torch.empty(0, dtype=torch.long))
    assert len(mined) == 0 and all(index.dtype == torch.long for index in mined)


@pytest.mark.parametrize("name", TRIPLET_MINERS)
def test_miners_run_without_gradient_and_return_valid_triplets(name, device):
    emb = torch.randn(10, 4, device=device, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3], device=device)
    miner = MINERS.create(name)
    assert isinstance(miner, BaseTripletMiner)
    a, p, n = miner(emb, labels)
    assert not a.requires_grad and a.device.type == device.type
    assert ((labels[a] == labels[p]) & (a != p) & (labels[a] != labels[n])).all()


def test_miners_reject_bad_inputs():
    with pytest.raises(ValueError, match="embeddings holds 1 NaN"):
        BatchHardMiner()(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="same length"):
        BatchAllMiner()(torch.randn(4, 2), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="margin must be > 0"):
        SemiHardMiner(margin=0.0)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        BatchAllMiner(margin=-1.0)


def test_all_valid_triplets_on_a_larger_batch():
    labels = torch.arange(128) // 64  # two classes of 64: 128·63·64 triplets, each (a, p, n) once
    mined = all_valid_triplets(labels)
    assert len(mined) == 128 * 63 * 64
    assert ((labels[mined.anchor] == labels[mined.positive]) & (labels[mined.anchor] != labels[mined.negative])).all()
    assert (mined.anchor != mined.positive).all()
    assert torch.stack(list(mined)).unique(dim=1).shape[1] == len(mined)


@pytest.mark.parametrize("miner", [BatchAllMiner(margin=0.3), SemiHardMiner(margin=0.5)],
                         ids=["batch_all", "semi_hard"])
def test_blocks_of_anchors_give_the_same_triplets_as_one_block(miner, monkeypatch):
    """The margin-based miners test (a, p, n) over blocks of anchors bounded in size; block edges change nothing."""
    import metric.miners.margin_miner as module

    emb, labels = batch(n=23, classes=4)
    whole = as_list(miner(emb, labels))
    largest = int(torch.bincount(labels).max())
    for elements in (1, 2 * largest * (23 - largest)):  # one anchor per block; two (and a last block of one)
        monkeypatch.setattr(module, "_BLOCK_ELEMENTS", elements)
        assert as_list(miner(emb, labels)) == whole
    assert len(whole) > 0


def reference_counts(triplets: list[tuple[int, int, int]], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair, in how many of ``triplets`` it is (anchor, positive) and (anchor, negative): a plain loop."""
    as_positive, as_negative = torch.zeros(n, n, dtype=torch.long), torch.zeros(n, n, dtype=torch.long)
    for a, p, neg in triplets:
        as_positive[a, p] += 1
        as_negative[a, neg] += 1
    return as_positive, as_negative


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("make", [lambda d: SemiHardMiner(margin=0.5, distance=d),
                                  lambda d: BatchAllMiner(d, margin=0.3), lambda d: BatchAllMiner(d)],
                         ids=["semi_hard", "batch_all_margin", "batch_all"])
@pytest.mark.parametrize("one_shot", [True, False], ids=["one_broadcast", "by_class"])
def test_counts_match_the_mined_triplets_counted_by_a_loop(kind, make, one_shot, monkeypatch):
    import metric.miners.margin_miner as module

    if not one_shot:
        monkeypatch.setattr(module, "_ONE_SHOT_ELEMENTS", 0)
    emb, labels = batch(n=14, classes=3)
    miner = make(DISTANCES.create(kind))
    mined = as_list(miner(emb, labels))
    expected = reference_counts(mined, len(labels))
    as_positive, as_negative = miner.counts(emb, labels)
    assert torch.equal(as_positive, expected[0]) and torch.equal(as_negative, expected[1])
    assert int(as_positive.sum()) == int(as_negative.sum()) == len(mined) > 0


@pytest.mark.parametrize("miner", [BatchAllMiner(margin=0.3), SemiHardMiner(margin=0.5)],
                         ids=["batch_all", "semi_hard"])
def test_counts_in_one_broadcast_by_class_and_by_blocks_agree(miner, monkeypatch):
    """Small batches are counted in one broadcast over all B³ candidates, larger ones class by class in blocks of
    anchors: the same counts."""
    import metric.miners.margin_miner as module

    emb, labels = batch(n=23, classes=4)
    one_shot = miner.counts(emb, labels)
    monkeypatch.setattr(module, "_ONE_SHOT_ELEMENTS", 0)
    by_class = miner.counts(emb, labels)
    monkeypatch.setattr(module, "_BLOCK_ELEMENTS", 1)
    by_blocks = miner.counts(emb, labels)
    assert int(one_shot[0].sum()) > 0
    for counts in (by_class, by_blocks):
        assert all(torch.equal(x, y) for x, y in zip(counts, one_shot))


def test_counts_of_a_batch_without_triplets_are_zero():
    emb = torch.randn(3, 2)
    for labels in (torch.tensor([1, 1, 1]), torch.tensor([0, 1, 2])):
        as_positive, as_negative = SemiHardMiner(margin=0.5).counts(emb, labels)
        assert as_positive.shape == (3, 3) and not as_positive.any() and not as_negative.any()
    with pytest.raises(ValueError, match="embeddings and labels"):
        SemiHardMiner(margin=0.5).counts(emb, torch.tensor([0, 1]))


@pytest.mark.parametrize("name", TRIPLET_MINERS)
def test_class_ids_beyond_0_to_c_mine_the_triplets_of_their_codes(name):
    # Negative, sparse and huge ids (2⁶² and 2⁶² + 1 are one float64), increasing with the codes, so the margin
    # miners' order (by the anchor's class) is the same too; a lone class of one sample has no triplet.
    emb, codes = batch(n=14, classes=4)
    codes[0] = 4
    ids = torch.tensor([-(2**62), -7, 2**62, 2**62 + 1, 10**15])
    labels = ids[codes]
    expected = {  # the registry's defaults: Euclidean, no margin for batch_all, 0.1 for semi_hard
        "batch_all": ref.all_triplets(labels),
        "batch_hard": ref.batch_hard(emb, labels, "euclidean"),
        "semi_hard": ref.semi_hard(emb, labels, "euclidean", 0.1),
    }[name]
    miner = MINERS.create(name)
    mined = as_list(miner(emb, labels))
    assert mined == as_list(miner(emb, codes))
    assert sorted(mined) == sorted(expected) and mined
    assert all(a != 0 for a, _, _ in mined)
