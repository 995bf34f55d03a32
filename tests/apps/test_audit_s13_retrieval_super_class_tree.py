"""SOP's super-classes as the hierarchical sampler's class tree (``class_tree: super_classes``): an anchor class's
neighbours are the classes of its super-class, nearest centre first, whatever the embedding tree would say; refused
(naming the option) for data without super-classes, and reported unused with another sampler."""
from __future__ import annotations

import pytest
import torch

from apps.retrieval.components import build_components
from apps.retrieval.config import RetrievalTrainConfig
from apps.retrieval.datasets import load_retrieval_split
from apps.retrieval.hooks import TreeSamplingHook, super_classes_of
from apps.retrieval.inference import Embedded
from apps.retrieval.train import train
from coseg.engine import ConfigError
from metric.samplers.hierarchical_class_sampler import HierarchicalClassBatchSampler
from tests.apps.retrieval_files import tiny_image
from tests.apps.retrieval_runs import tiny_config

LABELS = torch.arange(6).repeat_interleave(3)
SUPER = torch.tensor([0, 0, 0, 1, 1, 1]).repeat_interleave(3)  # classes 0–2 and 3–5


def config(**changes) -> RetrievalTrainConfig:
    values = dict(loss="triplet_margin", sampler="hierarchical", class_tree="super_classes", classes_per_batch=3,
                  samples_per_class=2, classes_per_anchor=3, embedding_dim=2)
    return RetrievalTrainConfig(**{**values, **changes})


def embedded() -> Embedded:
    """Class centres on a line at 0, 5, 6, 1, 2, 9: class 0's nearest centres are those of classes 3 and 4 (the
    other super-class), its super-class's are 1 (at 5) and 2 (at 6)."""
    centres = torch.tensor([0.0, 5.0, 6.0, 1.0, 2.0, 9.0])[LABELS]
    values = torch.stack([centres, torch.tensor([0.0, 0.1, -0.1]).repeat(6)], dim=1)
    return Embedded(values, torch.arange(len(LABELS)), [])


def test_neighbouring_classes_come_from_the_super_class():
    parts = build_components(config(), LABELS, 6, super_labels=SUPER)
    hook = next(h for h in parts.hooks if isinstance(h, TreeSamplingHook))
    hook.before_epoch(embedded, LABELS)
    tree = parts.sampler.tree
    assert tree.nearest_classes(0, 2).tolist() == [1, 2] and tree.nearest_classes(4, 5).tolist() == [3, 5, 0, 1, 2]
    for epoch in range(1, 4):
        parts.sampler.set_epoch(epoch)
        for batch in parts.sampler:
            assert SUPER[batch].unique().numel() == 1  # an anchor and its 2 neighbours: one super-class
    embedding_tree = build_components(config(class_tree=None), LABELS, 6)
    next(h for h in embedding_tree.hooks if isinstance(h, TreeSamplingHook)).before_epoch(embedded, LABELS)
    assert embedding_tree.sampler.tree.nearest_classes(0, 1).tolist() == [3]  # what the tree of centres says


def test_super_classes_are_refused_without_them_and_unused_options_are_named():
    with pytest.raises(ValueError, match="class_tree super_classes: the training data has no super-classes"):
        build_components(config(), LABELS, 6)
    with pytest.raises(ConfigError, match="--class-tree set but not used by .* sampler 'pk'"):
        build_components(config(sampler="pk"), LABELS, 6, super_labels=SUPER)
    with pytest.raises(ConfigError, match="--num-levels set but not used"):
        build_components(config(num_levels=4), LABELS, 6, super_labels=SUPER)
    with pytest.raises(ValueError, match="class_tree 'supers' is unknown; valid: embeddings, super_classes"):
        build_components(config(class_tree="supers"), LABELS, 6, super_labels=SUPER)
    with pytest.raises(ValueError, match="class 1 has images in two super-classes"):
        super_classes_of(LABELS, torch.where(torch.arange(18) == 4, 1, SUPER), 6)


def test_training_on_sop_gives_the_sampler_the_super_class_tree(tmp_path, monkeypatch):
    root = tmp_path / "Stanford_Online_Products"
    lines = ["image_id class_id super_class_id path"]
    for class_id in range(1, 7):
        folder = ("bicycle_final", "chair_final")[class_id > 3]
        for k in range(3):
            relative = f"{folder}/{class_id}_{k}.JPG"
            tiny_image(root / relative, seed=10 * class_id + k)
            lines.append(f"{len(lines)} {class_id} {1 + (class_id > 3)} {relative}")
    (root / "Ebay_train.txt").write_text("\n".join(lines) + "\n")
    trees = []
    original = HierarchicalClassBatchSampler.set_tree
    monkeypatch.setattr(HierarchicalClassBatchSampler, "set_tree",
                        lambda self, tree: (trees.append(tree), original(self, tree))[1])
    cfg = tiny_config(tmp_path, tmp_path / "run", layout="sop", sampler="hierarchical", class_tree="super_classes",
                      classes_per_batch=2, val_fraction=0, epochs=1)
    train(cfg)
    split = load_retrieval_split(tmp_path, "train")
    assert split.super_classes == ["bicycle_final", "chair_final"] and trees
    assert trees[0].assignments[1].tolist() == [0, 0, 0, 1, 1, 1]
