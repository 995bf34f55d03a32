"""Inference on extreme inputs: thin, tiny and constant images, groups whose masks hold no foreground or no
background, one image's consensus similarities larger than the memory budget, and model files with NaN weights."""
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coseg.checkpoints import load_for_inference
from coseg.inference import images_for, predict_dataset
from coseg.models import EdgeFilter, GroupColourCut, GroupRefinement, GroupStatistics, create_model
from coseg.models.group_consensus import best_matches
from tests.coseg.pipeline_fixtures import ConstantModel
from tests.helpers import assert_close

CPU = torch.device("cpu")
SHAPES = {"1x2000": (1, 2000), "2000x1": (2000, 1), "3x4000": (3, 4000), "1x1": (1, 1), "5x7": (5, 7),
          "31x33": (31, 33)}
COLOURS = {"black": (0, 0, 0), "white": (255, 255, 255), "green": (10, 200, 30)}


@pytest.fixture(scope="module")
def extreme_images(tmp_path_factory) -> list[Path]:
    """Thin, tiny and odd-sized noise images, and constant 40 × 50 ones."""
    root = tmp_path_factory.mktemp("extreme")
    rng = np.random.default_rng(0)
    paths = []
    for name, (h, w) in SHAPES.items():
        paths.append(root / f"{name}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    for name, colour in COLOURS.items():
        paths.append(root / f"{name}.png")
        cv2.imwrite(str(paths[-1]), np.full((40, 50, 3), colour, np.uint8))
    return paths


def group_model():
    torch.manual_seed(0)
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=2)
    for module in model.group_consensus:  # fresh fusion layers are zero: make the group matter
        torch.nn.init.normal_(module.fuse[-1].weight, std=0.1)
    return model.eval()


ALL_STEPS = dict(flip=True, edges=EdgeFilter(), colour=GroupColourCut(), refinement=GroupRefinement(),
                 statistics=GroupStatistics())


@pytest.mark.parametrize("steps", [{}, ALL_STEPS], ids=["plain", "every-step"])
@pytest.mark.parametrize("grouped", [True, False], ids=["group", "single"])
def test_every_mask_has_its_images_size_and_no_nan(extreme_images, steps, grouped):
    if not grouped:
        steps = {k: v for k, v in steps.items() if k not in ("refinement", "statistics")}
    model = group_model()
    dataset = images_for(extreme_images, 64, steps.get("colour"))
    groups = [0] * len(extreme_images) if grouped else None
    masks = dict(predict_dataset(model, dataset, CPU, batch_size=4, original_size=True, groups=groups, **steps))
    assert sorted(masks) == list(range(len(extreme_images)))
    for i, mask in masks.items():
        assert isinstance(mask, np.ndarray) and mask.dtype == bool
        assert mask.shape == cv2.imread(str(extreme_images[i])).shape[:2], extreme_images[i].name
    probs = dict(predict_dataset(model, dataset, CPU, batch_size=4, groups=groups, **steps))
    assert all(not torch.isnan(p).any() and 0 <= p.min() and p.max() <= 1 for p in probs.values())


@pytest.mark.parametrize("p", [0.0, 1.0, 0.97, 0.3, 0.5],
                         ids=["background", "foreground", "sure-fg", "unsure-bg", "one-half"])
def test_a_group_predicted_all_one_way_keeps_its_masks(extreme_images, p):
    """No sure background (or foreground) in any image: nothing to fit colours on, the masks stay the model's."""
    dataset = images_for(extreme_images, 64, GroupColourCut())
    masks = dict(predict_dataset(ConstantModel(p), dataset, CPU, original_size=True,
                                 groups=[0] * len(extreme_images), colour=GroupColourCut(), edges=EdgeFilter()))
    assert all(mask.all() if p >= 0.5 else not mask.any() for mask in masks.values())


@pytest.mark.parametrize("logit", [30.0, -30.0, float("inf"), -float("inf")])
def test_refinement_with_an_empty_prototype_gives_no_nan(logit):
    embeddings = F.normalize(torch.randn(3, 4, 4, 4), dim=1)
    refined = GroupRefinement()(torch.full((3, 1, 16, 16), logit), embeddings)
    assert not torch.isnan(refined).any() and (torch.sigmoid(refined) >= 0.5).all() == (logit > 0)


def test_best_matches_splits_an_image_whose_similarities_exceed_the_budget():
    keys = F.normalize(torch.randn(2, 8, 50), dim=1)
    references = F.normalize(torch.randn(3, 8, 40), dim=1)
    assert_close(best_matches(keys, references, budget=100), best_matches(keys, references))
    assert_close(best_matches(keys, references, budget=1), best_matches(keys, references))


@pytest.mark.slow  # a fresh interpreter (its peak memory is this call's): importing coseg takes seconds
def test_best_matches_memory_stays_within_the_budget():
    """One image's 2048 pixels against 16 references of 2048 pixels: 128 MiB of similarities at once before the
    budget (here 256 KiB) held for whole images only (at 1024 px, 4096 pixels at 1/16 against 128 references:
    8.6 GB)."""
    script = textwrap.dedent("""
        import resource, torch, torch.nn.functional as F
        from coseg.models.group_consensus import best_matches
        torch.set_num_threads(1)
        a, b = F.normalize(torch.randn(1, 8, 2048), dim=1), F.normalize(torch.randn(16, 8, 2048), dim=1)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert best_matches(a, b, budget=1 << 16).shape == (1, 2048, 16)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    root = Path(__file__).resolve().parents[2]
    grown_mib = int(subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                                   check=True).stdout)
    assert grown_mib < 48


def test_model_file_with_nan_weights_is_refused(tmp_path):
    model = create_model("unet", weights=None, embedding_dim=4)
    state = model.state_dict()
    state["mask_head.weight"][0, 0, 0, 0] = float("nan")
    model.load_state_dict(state)
    path = tmp_path / "diverged.safetensors"
    model.save(path)
    with pytest.raises(ValueError, match=r"diverged\.safetensors.*1 NaN or infinite value\(s\) in 'mask_head\.weight'"):
        load_for_inference(path, CPU)
    state["mask_head.weight"][0, 0, 0, 0] = 0.0
    state["decoder.blocks.0.conv1.1.running_var"][0] = float("inf")
    model.load_state_dict(state)
    model.save(path)
    with pytest.raises(ValueError, match="running_var"):
        load_for_inference(path, CPU)


def test_retrieval_model_file_with_nan_weights_is_refused(tmp_path):
    """Every model file loader checks the weights (a retrieval model's NaN embeddings went into faiss's index)."""
    from apps.retrieval.model import create_retrieval_model, load_retrieval_model

    model = create_retrieval_model(weights=None, embedding_dim=4)
    state = model.state_dict()
    state["embedding.weight"][0, 0] = float("nan")
    model.load_state_dict(state)
    path = tmp_path / "diverged.safetensors"
    model.save(path)
    with pytest.raises(ValueError, match=r"diverged\.safetensors.*1 NaN or infinite value\(s\) in 'embedding\.weight'"):
        load_retrieval_model(path)
