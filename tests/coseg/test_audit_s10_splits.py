"""Audit of coseg.data.splits and `coseg split`: draws against naive references, errors naming the option."""
from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from apps.cli import main
from coseg.data import holdout_groups, make_synthetic_coseg, stratified_holdout, train_test_split


def linked_sets(groups, rng):
    """A random `together` mapping as groups_sharing_images returns it: group → smallest name of its set."""
    parent = {g: g for g in groups}

    def root(g):
        while parent[g] != g:
            g = parent[g]
        return g

    for g in groups:
        if rng.random() < 0.3:
            a, b = sorted((root(g), root(rng.choice(groups))))
            parent[b] = a
    sets = {g: root(g) for g in groups}
    return {g: r for g, r in sets.items() if sum(v == r for v in sets.values()) > 1}


def test_draws_keep_linked_groups_together_and_ignore_the_input_order():
    rng = random.Random(0)
    for _ in range(300):
        groups = [f"g{i:02d}" for i in range(rng.randint(2, 10))]
        subsets = {g: rng.choice(["A", "B", None]) for g in groups}
        together = linked_sets(groups, rng)
        fraction, seed = rng.choice([0.1, 0.3, 0.5]), rng.randint(0, 3)
        shuffled = dict(rng.sample(list(subsets.items()), len(subsets)))
        kept, held = stratified_holdout(subsets, fraction, seed, together)
        assert (kept, held) == stratified_holdout(shuffled, fraction, seed, together)
        assert sorted(kept + held) == groups and kept
        assert not [(h, k) for h in held for k in kept if together.get(h, h) == together.get(k, k)]
        units = len({together.get(g, g) for g in groups})
        if units > 1:
            kept, held = holdout_groups(list(reversed(groups)), fraction=fraction, seed=seed, together=together)
            assert (kept, held) == holdout_groups(groups, fraction=fraction, seed=seed, together=together)
            assert held and kept and len({together.get(g, g) for g in held}) == max(1, round(fraction * units))


def test_a_test_fraction_leaving_no_training_group_is_named():
    with pytest.raises(ValueError, match=r"^test_fraction 0.8: cannot hold out 2 of 2 groups"):
        train_test_split({"a": None, "b": None}, 0.8)


def test_coseg_split_names_the_test_fraction_and_writes_nothing(tmp_path):
    data = make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=1, size=16)
    result = CliRunner().invoke(main, ["split", "--data", str(data), "--test-fraction", "0.8"])
    assert result.exit_code == 1 and "test_fraction 0.8" in result.output
    assert not (data / "splits.json").exists()
    result = CliRunner().invoke(main, ["split", "--data", str(data), "--test-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    split = json.loads((data / "splits.json").read_text())
    assert sorted(split["train"] + split["test"]) == ["00-star", "01-ellipse"] and len(split["test"]) == 1


@pytest.mark.parametrize("fraction", [-0.5, 1.0, 1.5, float("nan")])
def test_stratified_holdout_refuses_a_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\), got"):
        stratified_holdout({"a": "A", "b": "A", "c": "B", "d": "B"}, fraction)
