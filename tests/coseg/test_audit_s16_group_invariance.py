"""``predict_dataset`` in group mode, against a naive reference (each group predicted whole by ``predict_group``,
then cut and resized): an image's result depends neither on the order of the images, nor on ``batch_size``, nor on
its group being read from disk in chunks, with groups interleaved in the file list (one of a single image) and
images of different sizes; an ensemble of a group model and a single-image model streams as its members' mean."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from coseg.inference import foreground_at_size, images_for, predict_dataset
from coseg.models import (CosegEnsemble, EdgeFilter, GroupColourCut, GroupRefinement, GroupStatistics,
                          create_model)
from tests.helpers import assert_close

CPU = torch.device("cpu")
SIZE = 64
GROUPS = [0, 1, 0, 2, 1, 0, 1, 0]  # interleaved; group 2 is a single image
SHAPES = [(40, 60), (100, 30), (64, 64), (23, 77), (80, 80), (50, 120), (33, 33), (1, 9)]
STEPS = {
    "flip-edges": dict(flip=True, edges=EdgeFilter()),
    "flip-edges-colour": dict(flip=True, edges=EdgeFilter(), colour=GroupColourCut(iterations=1)),
    "refinement-statistics": dict(refinement=GroupRefinement(), statistics=GroupStatistics(), edges=EdgeFilter()),
}


def group_model(seed: int = 0, group_levels: int = 1):
    torch.manual_seed(seed)
    model = create_model("unet", encoder="tu-resnet18", weights=None, embedding_dim=4, group_levels=group_levels)
    for module in model.group_consensus:  # fresh fusion layers are zero: make the group matter
        torch.nn.init.normal_(module.fuse[-1].weight, std=1.0)
    with torch.no_grad():
        model.mask_head.bias += 0.2  # probabilities around 0.5: masks of both kinds of pixel
    return model.eval()


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> list[Path]:
    """Noise images of different sizes, aspect ratios and contrasts, each with a block of its own colour."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    written = []
    for i, (h, w) in enumerate(SHAPES):
        image = (rng.integers(0, 256, (h, w, 3)) // rng.integers(1, 8)).astype(np.uint8)
        image[h // 4: max(3 * h // 4, 1), w // 4: 3 * w // 4] = rng.integers(0, 256, 3)
        written.append(root / f"{i}.png")
        cv2.imwrite(str(written[-1]), image)
    return written


@pytest.fixture(scope="module")
def model():
    return group_model()


def predicted(model, paths: list[Path], order: list[int], batch_size: int, stream_above: int = 128,
              grouped: bool = True, **steps) -> dict[int, np.ndarray]:
    """Each image's result by its position in ``paths``, predicted with the images given in ``order``: its mask at
    its original size after a colour cut, else its probabilities at the model's size."""
    dataset = images_for([paths[i] for i in order], SIZE, steps.get("colour"))
    groups = [GROUPS[i] for i in order] if grouped else None
    results = dict(predict_dataset(model, dataset, CPU, batch_size=batch_size, groups=groups,
                                   original_size="colour" in steps, stream_above=stream_above, **steps))
    assert all(not isinstance(result, str) for result in results.values()), results
    return {order[k]: np.asarray(result) for k, result in results.items()}


def reference(model, paths: list[Path], flip: bool = False, edges=None, colour=None, refinement=None,
              statistics=None) -> dict[int, np.ndarray]:
    """As :func:`predicted`, each group predicted whole in one ``predict_group`` call (and cut alone)."""
    dataset = images_for(paths, SIZE, colour)
    items = [dataset[i] for i in range(len(paths))]
    results = {}
    for group in sorted(set(GROUPS)):
        members = [i for i, g in enumerate(GROUPS) if g == group]
        images = torch.stack([items[i]["image"] for i in members]).float() / 255
        probs = model.predict_group(images, chunk_size=len(members), refinement=refinement, flip=flip, edges=edges,
                                    statistics=statistics)
        if colour is not None:
            probs = colour(torch.stack([items[i]["cut_image"] for i in members]), probs)
        for i, prob in zip(members, probs[:, 0]):
            results[i] = (prob.numpy() if colour is None else
                          foreground_at_size(prob, tuple(items[i]["size"].tolist())))
    return results


def mismatch(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> float:
    """How far two sets of results are apart: the largest share of pixels on which two masks of an image (each of
    the image's size) differ, or the largest difference of two probabilities."""
    assert sorted(a) == sorted(b) == list(range(len(SHAPES)))
    if a[0].dtype != np.bool_:
        return max(float(np.abs(a[i] - b[i]).max()) for i in a)
    assert all(a[i].shape == b[i].shape == SHAPES[i] for i in a)
    return max(float((a[i] != b[i]).mean()) for i in a)


@pytest.mark.parametrize("steps", list(STEPS), ids=list(STEPS))
def test_results_depend_neither_on_the_order_nor_on_the_batch_size_nor_on_streaming(model, paths, steps):
    options = STEPS[steps]
    expected = reference(model, paths, **options)
    streamed = "statistics" not in options  # refinement and statistics need the whole group: never streamed
    runs = [(list(range(8)), 16, 128), ([5, 3, 7, 0, 6, 1, 4, 2], 1, 128), ([2, 7, 4, 1, 0, 6, 3, 5], 3, 128)]
    if streamed:
        runs += [([6, 0, 3, 5, 2, 7, 1, 4], 2, 1), ([0, 1, 2, 3, 4, 5, 6, 7], 3, 2)]
    for order, batch_size, stream_above in runs:
        got = predicted(model, paths, order, batch_size, stream_above, **options)
        assert mismatch(got, expected) < 1e-4, (order, batch_size, stream_above)
    alone = predicted(model, paths, list(range(8)), 16, grouped=False,
                      **{k: v for k, v in options.items() if k not in ("refinement", "statistics")})
    assert mismatch(alone, expected) > 1e-3  # the group matters: a reference that ignored it would fail


def test_an_ensemble_with_a_single_image_member_streams_as_its_members_mean(paths):
    members = [group_model(0), group_model(1, group_levels=0)]
    ensemble = CosegEnsemble(members).eval()
    dataset = images_for(paths, SIZE, None)
    images = torch.stack([dataset[i]["image"] for i in range(len(paths))]).float() / 255
    expected = torch.zeros(len(paths), 1, SIZE, SIZE)
    for group in sorted(set(GROUPS)):
        at = [i for i, g in enumerate(GROUPS) if g == group]
        mean = torch.stack([m.predict_group(images[at], chunk_size=16, flip=True) for m in members]).mean(0)
        expected[at] = EdgeFilter()(mean, images[at])
    for batch_size, stream_above in ((16, 128), (2, 1)):
        got = dict(predict_dataset(ensemble, dataset, CPU, batch_size=batch_size, groups=GROUPS, flip=True,
                                   edges=EdgeFilter(), stream_above=stream_above))
        assert_close(torch.stack([got[i] for i in range(len(paths))]), expected[:, 0], atol=1e-5, rtol=1e-4)
