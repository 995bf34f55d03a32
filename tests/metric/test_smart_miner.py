"""SmartMiner against a brute-force reference (flat index), the mining rule on HNSW, fallbacks and edge cases."""
from __future__ import annotations

import pytest
import torch

from metric.miners.adaptive_controller import AdaptiveHardnessController
from metric.miners.smart_miner import SmartMiner
from tests.reference import retrieval as ref


def clustered(n: int, dim: int, classes: int, spread: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    return torch.randn(classes, dim, generator=g)[labels] + spread * torch.randn(n, dim, generator=g), labels


@pytest.mark.parametrize("offset", [0.0, 0.4, -0.3])
def test_flat_index_matches_brute_force(offset: float) -> None:
    x, y = clustered(80, 4, 5, spread=0.8)
    controller = AdaptiveHardnessController(initial_offset=offset)
    miner = SmartMiner(num_neighbours=8, index="flat", controller=controller)
    miner.update(x, y)
    anchors = list(range(80))
    triplets = miner.mine(torch.tensor(anchors))
    assert triplets.anchor.tolist() == anchors
    mined = dict(zip(anchors, zip(triplets.positive.tolist(), triplets.negative.tolist())))
    expected = ref.smart_mine(x.tolist(), y.tolist(), anchors, 8, offset, {a: p for a, (p, _) in mined.items()})
    for a, (positive, negative) in expected.items():
        assert y[mined[a][0]] == y[a] and mined[a][0] != a
        assert y[mined[a][1]] != y[a]
        if positive is not None:
            assert mined[a][0] == positive, a
        if negative is not None:
            assert mined[a][1] == negative, a
    assert miner.last_stats == {
        "anchors": 80,
        "skipped": 0,
        "positive_fallbacks": sum(p is None for p, _ in expected.values()),
        "negative_fallbacks": sum(n is None for _, n in expected.values()),
    }
    assert 0 < miner.last_stats["negative_fallbacks"] < 80  # the case is exercised, not everywhere


def test_hnsw_triplets_follow_the_rule_and_mostly_match_exact_search() -> None:
    x, y = clustered(600, 16, 60, spread=0.5)
    offset = 0.1
    exact = SmartMiner(num_neighbours=30, index="flat", controller=AdaptiveHardnessController(initial_offset=offset))
    graph = SmartMiner(num_neighbours=30, index="hnsw", hnsw_m=16, controller=exact.controller)
    exact.update(x, y)
    graph.update(x, y)
    anchors = torch.arange(600)
    t_exact, t_graph = exact.mine(anchors), graph.mine(anchors)
    assert graph.last_stats["positive_fallbacks"] == graph.last_stats["negative_fallbacks"] == 0
    a, p, n = t_graph
    assert torch.equal(y[a], y[p]) and not (y[a] == y[n]).any() and not (p == a).any()
    assert ((x[a] - x[n]).norm(dim=1) > (x[a] - x[p]).norm(dim=1) + offset - 1e-5).all()
    agree = (t_exact.positive == p) & (t_exact.negative == n)
    assert agree.float().mean() > 0.9


def test_fallbacks_draw_uniformly_from_the_right_class() -> None:
    # num_neighbours=1 and far-apart points: the single listed neighbour rarely serves, fallbacks dominate.
    x = torch.arange(12, dtype=torch.float32)[:, None] * torch.tensor([[1.0, 0.0]])
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    miner = SmartMiner(num_neighbours=1, index="flat")
    miner.update(x, y)
    anchors = torch.zeros(3000, dtype=torch.long)  # anchor 0 (class 0), many draws
    triplets = miner.mine(anchors)
    assert miner.last_stats["positive_fallbacks"] == 3000  # its nearest neighbour (1) is of class 1
    assert set(triplets.positive.tolist()) == {3, 6, 9}
    # Sample 1, the only listed one, is no farther than any positive: every negative is a fallback too.
    assert miner.last_stats["negative_fallbacks"] == 3000
    assert set(triplets.negative.tolist()) == {1, 2, 4, 5, 7, 8, 10, 11}
    counts = torch.bincount(triplets.positive, minlength=12)[[3, 6, 9]].float()
    assert (counts / 3000 - 1 / 3).abs().max() < 0.05


def test_seeded_generator_makes_fallbacks_reproducible() -> None:
    x, y = clustered(50, 3, 4, spread=1.0)
    miner = SmartMiner(num_neighbours=2, index="flat")
    miner.update(x, y)
    first = miner.mine(torch.arange(50), generator=torch.Generator().manual_seed(3))
    again = miner.mine(torch.arange(50), generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_anchors_without_any_triplet_are_skipped() -> None:
    x = torch.randn(7, 3)
    miner = SmartMiner(num_neighbours=3, index="flat")
    miner.update(x, torch.tensor([0, 0, 0, 1, 1, 2, 1]))  # class 2 has one sample
    triplets = miner.mine(torch.tensor([5, 0, 3]))
    assert triplets.anchor.tolist() == [0, 3]
    assert miner.last_stats["skipped"] == 1
    miner.update(x, torch.zeros(7, dtype=torch.long))  # one class: no negative anywhere
    assert len(miner.mine(torch.arange(7))) == 0


def test_numpy_inputs_and_num_samples() -> None:
    x, y = clustered(30, 4, 3, spread=0.5)
    miner = SmartMiner(num_neighbours=5)
    assert miner.num_samples == 0
    miner.update(x.numpy(), y.numpy())
    assert miner.num_samples == 30
    triplets = miner.mine(torch.arange(30).numpy())
    assert triplets.anchor.dtype == torch.long and len(triplets) == 30


def test_errors() -> None:
    miner = SmartMiner(num_neighbours=3, index="flat")
    with pytest.raises(RuntimeError, match="call update"):
        miner.mine(torch.arange(3))
    with pytest.raises(ValueError, match="NaN"):
        miner.update(torch.full((4, 2), float("nan")), torch.arange(4))
    with pytest.raises(ValueError, match="same length"):
        miner.update(torch.randn(4, 2), torch.arange(3))
    miner.update(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        miner.mine(torch.tensor([4]))
    with pytest.raises(ValueError, match="1-D integer"):
        miner.mine(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="index must be"):
        SmartMiner(index="ivf")
    with pytest.raises(ValueError, match="ef_search"):
        SmartMiner(num_neighbours=10, ef_search=5)
    with pytest.raises(ValueError, match="num_neighbours"):
        SmartMiner(num_neighbours=0)


def test_a_boolean_mask_of_anchors_is_refused() -> None:
    """A mask of anchors was read as the dataset indices 0 and 1: N triplets of samples 0 and 1, silently."""
    miner = SmartMiner(num_neighbours=3, index="flat")
    miner.update(torch.randn(6, 2), torch.tensor([0, 0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"1-D integer array, got shape \(6,\) \(torch.bool\)"):
        miner.mine(torch.ones(6, dtype=torch.bool))


def check_against_reference(miner: SmartMiner, x: torch.Tensor, y: torch.Tensor, offset: float) -> None:
    """Every anchor mined and compared with the loop reference; fallbacks checked for class and self-exclusion."""
    anchors = list(range(len(y)))
    triplets = miner.mine(torch.tensor(anchors))
    a, p, n = (t.tolist() for t in triplets)
    assert a == anchors
    mined = dict(zip(a, zip(p, n)))
    drawn = {k: v[0] for k, v in mined.items()}
    expected = ref.smart_mine(x.tolist(), y.tolist(), anchors, miner.num_neighbours, offset, drawn)
    for anchor, (positive, negative) in expected.items():
        assert anchor not in mined[anchor] and y[mined[anchor][0]] == y[anchor] and y[mined[anchor][1]] != y[anchor]
        assert positive is None or mined[anchor][0] == positive, anchor
        assert negative is None or mined[anchor][1] == negative, anchor
    assert miner.last_stats["positive_fallbacks"] == sum(p is None for p, _ in expected.values())
    assert miner.last_stats["negative_fallbacks"] == sum(n is None for _, n in expected.values())


@pytest.mark.parametrize(
    ("points", "labels", "offset"),
    [
        # Ten identical samples of class 0 and spread-out others of class 1.
        ([[1, 1]] * 10 + [[5 + i, 2 * i] for i in range(6)], [0] * 10 + [1] * 6, 0.0),
        # Anchor 4 and sample 3 (class 0) duplicate three class-1 samples: its 3 nearest others hold no positive.
        ([[0, 0]] * 5 + [[9, 9], [4, 0], [0, 6]], [1, 1, 1, 0, 0, 0, 1, 1], 0.0),
        # Anchor 4 duplicates three class-0 samples and one class-1 sample (index 3, 4th tied): no listed negative.
        ([[0, 0]] * 5 + [[9, 9], [4, 0], [0, 6]], [0, 0, 0, 1, 0, 0, 1, 1], -0.5),
    ],
)
def test_exact_duplicates_list_num_neighbours_others(points: list, labels: list, offset: float) -> None:
    """With more than num_neighbours duplicates the anchor is not among faiss's num_neighbours + 1 results: all of
    them were listed, one beyond the num_neighbours nearest others (a positive or negative taken from there)."""
    x, y = torch.tensor(points, dtype=torch.float32), torch.tensor(labels)  # integer coordinates: exact distances
    miner = SmartMiner(num_neighbours=3, index="flat", controller=AdaptiveHardnessController(initial_offset=offset))
    miner.update(x, y)
    check_against_reference(miner, x, y, offset)


@pytest.mark.parametrize("offset", [0.0, 0.5, -0.5])
def test_many_duplicates_of_mixed_classes_match_brute_force(offset: float) -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randint(0, 3, (60, 2), generator=g).float()  # 9 distinct points, ~7 copies each
    y = torch.randint(0, 4, (60,), generator=g)
    miner = SmartMiner(num_neighbours=3, index="flat", controller=AdaptiveHardnessController(initial_offset=offset))
    miner.update(x, y)
    check_against_reference(miner, x, y, offset)


def test_hnsw_with_many_duplicates_lists_num_neighbours_others_of_what_the_graph_returns() -> None:
    """HNSW is approximate (with ~22 copies per point it often misses the duplicates, even the anchor itself): the
    rule is checked against a loop over the first num_neighbours others among the graph's own results."""
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 3, (200, 2), generator=g).float()
    y = torch.randint(0, 4, (200,), generator=g)
    miner = SmartMiner(num_neighbours=3, index="hnsw", hnsw_m=4)
    miner.update(x, y)
    a, p, n = miner.mine(torch.arange(200))
    assert not (p == a).any() and not (n == a).any()
    assert torch.equal(y[a], y[p]) and not (y[a] == y[n]).any()
    _, results = miner._index.search(x.numpy(), 4)
    fallbacks = [0, 0]
    for anchor, row in enumerate(results.tolist()):
        listed = [j for j in row if j not in (anchor, -1)][:3]
        positive = next((j for j in listed if y[j] == y[anchor]), None)
        to_positive = (x[anchor] - x[p[anchor] if positive is None else positive]).norm()
        negative = next((j for j in listed if y[j] != y[anchor] and (x[anchor] - x[j]).norm() > to_positive), None)
        assert positive is None or p[anchor] == positive, anchor
        assert negative is None or n[anchor] == negative, anchor
        fallbacks[0] += positive is None
        fallbacks[1] += negative is None
    assert [miner.last_stats["positive_fallbacks"], miner.last_stats["negative_fallbacks"]] == fallbacks
