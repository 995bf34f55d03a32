"""README sentences this session wrote, held to the code: the losses `coseg retrieval train` refuses as unable to learn
the classes (alone, or with one image or one class per batch) and the quoted line naming a group without masks."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

import metric.losses  # noqa: F401  (fills LOSSES)
from apps.retrieval.components import build_components
from apps.retrieval.config import RetrievalTrainConfig
from coseg.data import find_samples
from coseg.engine import ConfigError
from coseg.selection import groups_without_masks
from metric.registry import LOSSES
from tests.coseg.pipeline_fixtures import synthetic_set

TEXT = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
LABELS = torch.arange(4).repeat_interleave(3)
BATCH_ONLY = "takes its triplets within a batch"


def refusal(**options: object) -> str:
    """The ConfigError ``build_components`` gives for ``options``, or "" when it takes them."""
    try:
        build_components(RetrievalTrainConfig(**{"classes_per_batch": 2, **options}), LABELS, 4)
    except ConfigError as error:
        return str(error)
    return ""


def readme_names(pattern: str) -> set[str]:
    match = re.search(pattern, TEXT, flags=re.S)
    assert match, pattern
    return set(re.findall(r"`(\w+)`", match.group(1)))


def test_the_losses_the_readme_says_cannot_train_alone_are_those_refused() -> None:
    alone = readme_names(r"A loss that\s+cannot learn the classes as asked is refused before anything is written:"
                         r"(.*?), and a loss of the triplets within a batch")
    refused = {name for name in LOSSES.names() if refusal(loss=name) and BATCH_ONLY not in refusal(loss=name)}
    assert alone - {"class_representative"} == refused


@pytest.mark.parametrize("option, sentence", [("samples_per_class", "--samples-per-class 1"),
                                              ("classes_per_batch", "--classes-per-batch 1")])
def test_the_losses_of_the_batch_triplets_the_readme_lists_are_those_refused(option: str, sentence: str) -> None:
    listed = readme_names(r"a loss of the triplets within a batch\s+\((.*?)\) with `--samples-per-class 1`")
    assert f"`{sentence}`" in TEXT
    refused = {name for name in LOSSES.names() if BATCH_ONLY in refusal(loss=name, **{option: 1})}
    assert listed == refused


def test_the_quoted_line_of_a_group_without_masks_is_the_code_s(tmp_path: Path) -> None:
    quoted = re.search(r"\(`(group without masks: <folder> \(group '<name>': "
                       r"none of its N image\(s\) has a mask, …)\)`", TEXT)
    assert quoted, "README no longer quotes the line naming a group without masks"
    pattern = re.escape(quoted.group(1))
    for placeholder, regex in (("<folder>", r"\S+"), ("<name>", r"[^']+"), ("N", r"\d+"), ("…", r".+")):
        pattern = pattern.replace(re.escape(placeholder), regex)
    data = synthetic_set(tmp_path, groups=2, images=2, size=32)
    shutil.rmtree(data / "ground_truth" / "01-ellipse")
    problems = groups_without_masks(find_samples(data, "auto"), [], None)
    assert len(problems) == 1 and re.fullmatch(pattern, str(problems[0])), (pattern, [str(p) for p in problems])
