"""A group named twice (`evaluate --groups g,g`, `train --train-groups`) is refused naming it, as the retrieval
trainer refuses a class given twice in --train-classes."""
from __future__ import annotations

from pathlib import Path

import pytest

from coseg.data import find_samples, make_synthetic_coseg
from coseg.selection import choose_groups
from tests.coseg.test_selection import evaluate


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_synthetic_coseg(tmp_path / "data", num_groups=3, images_per_group=2, size=32)


def test_a_name_given_twice_is_named(data: Path) -> None:
    scan = find_samples(data, "icoseg")
    with pytest.raises(ValueError, match=r"^1 group name\(s\) given more than once: '00-star' \(name each group "
                                         r"once\)$"):
        choose_groups(scan, None, None, ["00-star", "01-ellipse", "00-star"])
    with pytest.raises(ValueError, match="and another name both resolve to '00-star'"):  # two names of one group
        choose_groups(scan, None, None, ["00-star", "00 Star"])
    assert choose_groups(scan, None, None, ["01-ellipse", "00-star"]) == ["01-ellipse", "00-star"]


def test_evaluate_refuses_a_group_given_twice(tmp_path: Path, data: Path) -> None:
    result = evaluate(tmp_path, data, "--groups", "00-star,00-star", "--output", tmp_path / "ev")
    assert result.exit_code == 1 and "given more than once: '00-star'" in result.output, result.output
    assert not (tmp_path / "ev").exists()
