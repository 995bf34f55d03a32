"""One SBCoseg subset folder given as the data set (``--data SBCoseg/ECFB``, to score a subset on its own, as SBCoseg
results are reported) names its groups as the whole data set does (``ECFB/<group>``), so a model trained on the
whole set is told when it is scored on its own training groups."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from apps.cli import main
from coseg.config import CosegTrainConfig
from coseg.data import find_samples, make_synthetic_coseg
from coseg.train import train


@pytest.fixture(scope="module")
def sbcoseg(tmp_path_factory) -> Path:
    """Ten groups, two in each subset folder (ECFB: 00-star, 05-star)."""
    return make_synthetic_coseg(tmp_path_factory.mktemp("sb") / "SBCoseg", num_groups=10, images_per_group=2,
                                size=32, layout="sbcoseg")


def test_a_subset_folder_keeps_the_group_names_and_subset_of_the_whole_data_set(sbcoseg):
    whole = {(s.image, s.mask, s.group, s.subset) for s in find_samples(sbcoseg).samples
             if s.subset == "ECFB"}
    part = find_samples(sbcoseg / "ECFB")
    assert part.layout == "sbcoseg" and part.problems == []
    assert {(s.image, s.mask, s.group, s.subset) for s in part.samples} == whole
    assert part.groups == ["ECFB/00-star", "ECFB/05-star"]


def test_scoring_one_subset_warns_of_the_groups_trained_on(sbcoseg, tmp_path):
    train(CosegTrainConfig(data=str(sbcoseg), output=str(tmp_path / "run"), members=1, epochs=1, weights="none",
                           image_size=32, groups_per_batch=2, images_per_group=2, triplet_pixels=4, group_levels=0,
                           augment=False, device="cpu", quiet=True, train_groups=["ECFB/00-star", "TR/01-ellipse"],
                           val_groups=["MH/02-polygon"]))
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(tmp_path / "run" / "best.safetensors"),
                                       "--data", str(sbcoseg / "ECFB"), "--output", str(tmp_path / "eval"),
                                       "--quiet", "--no-colour-cut"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert ("warning: 1 of the 2 evaluated groups was used to train this model ('ECFB/00-star'): these scores are "
            "not of unseen data") in result.output.splitlines()
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["trained_on"] == 1 and sorted(summary["per_group"]) == ["ECFB/00-star", "ECFB/05-star"]
