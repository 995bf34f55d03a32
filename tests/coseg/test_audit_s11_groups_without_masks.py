"""A group of which no image has a mask (e.g. a class folder whose ground truth was not copied) is left out of
`coseg train` and `coseg evaluate` when they choose all groups; both name it among the files they left out, a
single model and an ensemble alike. Groups chosen by name are not concerned (an unscored one is warned about)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from coseg.data import find_samples
from coseg.selection import groups_without_masks
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.coseg.test_train_run import TINY, coseg

LEFT_OUT = "group without masks"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = synthetic_set(tmp_path_factory.mktemp("data"), groups=4, images=4)
    shutil.rmtree(root / "ground_truth" / "03-cross")
    return root


def test_the_default_choice_names_each_group_without_masks(data):
    scan = find_samples(data, "auto")
    problems = groups_without_masks(scan, [], None)
    assert [(p.kind, p.path) for p in problems] == [(LEFT_OUT, data / "images" / "03-cross")]
    assert "group '03-cross': none of its 4 image(s) has a mask" in str(problems[0])
    assert groups_without_masks(scan, ["00-star"], None) == [] and groups_without_masks(scan, [], "train") == []


@pytest.mark.slow
@pytest.mark.parametrize("members", [1, 2])
def test_train_and_evaluate_name_the_group_they_leave_out(data, tmp_path, members):
    run = tmp_path / "run"
    code, output = coseg("train", "--data", data, "--output", run, "--epochs", 1, *TINY, "--members", members)
    assert code == 0, output
    assert f"{LEFT_OUT}: {data / 'images' / '03-cross'}" in output, output
    code, output = coseg("evaluate", "--checkpoint", run / "best.safetensors", "--data", data, "--output",
                         tmp_path / "eval", "--device", "cpu", "--quiet")
    assert code == 0, output
    assert f"{LEFT_OUT}: {data / 'images' / '03-cross'}" in output, output
