"""An SOP-layout data set (one's own, or an edited copy) where a product has images in two super-classes: the
super-classes matter only to the hierarchical sampler's ``class_tree: super_classes``, so any other method trains,
and that one is refused naming the product as the data set does."""
from __future__ import annotations

from pathlib import Path

import pytest

from apps.retrieval.train import train
from tests.apps.retrieval_files import tiny_image
from tests.apps.retrieval_runs import tiny_config


def write_sop_with_a_mixed_class(root: Path) -> Path:
    """``root/Ebay_train.txt`` of products 11–16 (3 images each; super-classes 1 and 2), product 13's last image
    listed in super-class 9."""
    lines = ["image_id class_id super_class_id path"]
    for class_id in range(11, 17):
        super_id = 1 + class_id % 2
        for k in range(3):
            relative = f"super{super_id}_final/{class_id}_{k}.JPG"
            tiny_image(root / relative, seed=10 * class_id + k)
            lines.append(f"{len(lines)} {class_id} {9 if (class_id, k) == (13, 2) else super_id} {relative}")
    (root / "Ebay_train.txt").write_text("\n".join(lines) + "\n")
    return root


def test_a_product_in_two_super_classes_trains_without_the_super_class_tree(tmp_path: Path) -> None:
    data = write_sop_with_a_mixed_class(tmp_path / "sop")
    result = train(tiny_config(data, tmp_path / "run", layout="sop", val_fraction=0, epochs=1))
    assert result.train_classes == ["11", "12", "13", "14", "15", "16"]
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_the_super_class_tree_names_the_product_in_two_super_classes(tmp_path: Path) -> None:
    data = write_sop_with_a_mixed_class(tmp_path / "sop")
    cfg = tiny_config(data, tmp_path / "run", layout="sop", sampler="hierarchical", class_tree="super_classes",
                      val_fraction=0, epochs=1)
    with pytest.raises(ValueError, match="class '13' has images in two super-classes"):  # not its label, 2
        train(cfg)
    assert not (tmp_path / "run").exists()
