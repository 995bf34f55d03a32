"""The hierarchical sampler's own class tree (a loss other than hierarchical_triplet): ``--distance`` is used, and a
similarity or a number of levels below 1 is refused before a run is replaced."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from apps.cli import main
from apps.retrieval.components import build_components
from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.hooks import TreeSamplingHook
from apps.retrieval.inference import Embedded
from tests.apps.retrieval_runs import BACKBONE, TRAIN_CLASSES, tiny_set


def test_distance_builds_the_samplers_tree_for_another_loss():
    labels = torch.arange(4).repeat_interleave(3)
    cfg = RetrievalTrainConfig(loss="soft_triple", sampler="hierarchical", distance="snr", classes_per_batch=2,
                               samples_per_class=2, embedding_dim=8)
    parts = build_components(cfg, labels, 4)  # before: "--distance set but not used"
    hook = next(h for h in parts.hooks if isinstance(h, TreeSamplingHook))
    embeddings = torch.nn.functional.normalize(torch.randn(len(labels), 8, generator=torch.Generator().manual_seed(0)))
    hook.before_epoch(lambda: Embedded(embeddings, torch.arange(len(labels)), []), labels)
    assert type(parts.sampler.tree.distance).__name__ == "SNRDistance"


def test_similarity_for_the_samplers_tree_is_refused_before_the_old_run_is_replaced(tmp_path):
    data = tiny_set(tmp_path / "data")
    run = tmp_path / "run"
    common = ["retrieval", "train", "--data", str(data), "--train-classes", ",".join(TRAIN_CLASSES), "--output",
              str(run), "--backbone", BACKBONE, "--weights", "none", "--image-size", "32", "--embedding-dim", "8",
              "--classes-per-batch", "2", "--samples-per-class", "2", "--val-fraction", "0.34", "--epochs", "1",
              "--quiet", "--device", "cpu"]
    first = CliRunner().invoke(main, common, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = CliRunner().invoke(main, [*common, "--overwrite", "--loss", "global", "--sampler", "hierarchical",
                                       "--distance", "cosine"], catch_exceptions=False)
    assert result.exit_code != 0 and "is a similarity" in result.output, result.output
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # the old run is whole


@pytest.mark.parametrize("levels", [0, -3])
def test_levels_below_one_are_refused_when_the_components_are_built(levels):
    cfg = RetrievalTrainConfig(loss="triplet_margin", sampler="hierarchical", num_levels=levels, classes_per_batch=2,
                               samples_per_class=2, embedding_dim=8)
    with pytest.raises(ValueError, match=f"num_levels must be >= 1, got {levels}"):  # 0: was 16 levels, silently
        build_components(cfg, torch.arange(4).repeat_interleave(3), 4)
