"""The Python API refuses inputs that used to give a wrong number without a word: images outside [0, 1] or NaN,
non-integer model sizes, 0/255 training masks, probabilities scored as masks, 0-255 guidance images, colour-cut
probabilities outside [0, 1], non-integer image sizes; names the image size or batch when a training batch gives
BatchNorm one value per channel; and takes an empty colour-cut group and tensors to score."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from coseg.data import CosegDataset, find_samples, make_synthetic_coseg
from coseg.inference import ImageFileDataset
from coseg.models import EdgeFilter, GroupColourCut, GroupRefinement, create_model, load_model
from coseg.objective import CosegObjective
from coseg.scores import score_image, summarize
from metric.losses import ISTripletLoss


@pytest.fixture(scope="module")
def grouped():
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1).eval()
    torch.nn.init.normal_(model.group_consensus[0].fuse[-1].weight, std=0.5)  # the consensus changes the output
    return model


@pytest.mark.parametrize("bad", ["nan", "255", "normalised"])
def test_images_outside_0_1_are_refused(grouped, bad):
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    if bad == "nan":  # one NaN image made its whole group's probabilities NaN
        images[0, :, :4, :4] = float("nan")
        match = "got 48 NaN value"
    elif bad == "255":
        images[0] *= 255
        match = "got values from .* to 25"
    else:
        images = (images - 0.5) / 0.25
        match = "got values from -"
    for predict in (lambda: grouped(images, torch.zeros(3, dtype=torch.long)), lambda: grouped.predict_group(images),
                    lambda: grouped.predict(images)):
        with pytest.raises(ValueError, match=rf"images must be in \[0, 1\] .*{match}"):
            predict()
    assert grouped.predict_group(images.nan_to_num(0).clamp(0, 1)).isfinite().all()


@pytest.mark.parametrize("argument, value", [("embedding_dim", 8.0), ("embedding_stride", 2.0),
                                             ("group_levels", True), ("embedding_hidden_channels", 4.0)])
def test_create_model_refuses_non_integer_sizes(argument, value):
    with pytest.raises(TypeError, match=f"{argument} must be an integer, got {value}"):
        create_model("unet", weights=None, **{argument: value})


@pytest.mark.parametrize("group_levels, statistics", [(1, "train"), (1, "frozen"), (0, "train")])
def test_a_training_batch_of_one_smallest_image_names_the_image_size_and_batch(group_levels, statistics):
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=group_levels).train()
    if statistics == "frozen":  # the consensus' own BatchNorm still trains
        model.freeze_encoder_statistics()
    with pytest.raises(ValueError, match="a training batch of one 32×32 image has a 1×1 deepest feature map.*more "
                                         "images per batch or at a larger image size"):
        model(torch.rand(1, 3, 32, 32))
    assert model(torch.rand(2, 3, 32, 32)).mask_logits.shape == (2, 1, 32, 32)  # two values per channel
    assert model(torch.rand(1, 3, 64, 32)).mask_logits.shape == (1, 1, 64, 32)
    assert model.eval()(torch.rand(1, 3, 32, 32)).mask_logits.shape == (1, 1, 32, 32)


def test_a_training_batch_of_one_smallest_image_runs_where_no_batchnorm_trains_on_it():
    model = create_model("unet", weights=None, embedding_dim=4).train()
    model.freeze_encoder_statistics()  # no consensus: the decoder starts at 1/16
    assert model(torch.rand(1, 3, 32, 32)).mask_logits.shape == (1, 1, 32, 32)


def test_create_model_refuses_non_bool_flags():
    with pytest.raises(TypeError, match="semantic_prior must be True or False, got 1"):
        create_model("unet", weights=None, group_levels=1, semantic_prior=1)


def test_numpy_integer_sizes_give_a_loadable_model_file(tmp_path):
    model = create_model("unet", weights=None, embedding_dim=np.int64(4), group_levels=np.int32(1)).eval()
    model.save(tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(model.predict_group(images), loaded.predict_group(images))


def objective_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    embeddings = torch.nn.functional.normalize(torch.randn(2, 4, 2, 2), dim=1)
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[:, :4] = 1
    return logits, embeddings, masks


def test_objective_refuses_masks_other_than_0_1():
    logits, embeddings, masks = objective_inputs()
    objective = CosegObjective({"dice": 1.0, "ce": 1.0})
    terms = objective(logits, embeddings, masks.float())
    terms["loss"].backward()
    assert terms["ce"] > 0 and logits.grad.isfinite().all()
    for bad in (masks * 255, masks * 2, masks.float() / 2):  # 0/255 masks gave a negative cross-entropy
        with pytest.raises(ValueError, match=r"masks must hold only 0 \(background\) and 1 \(foreground\)"):
            objective(logits, embeddings, bad)


def test_objective_names_embeddings_of_another_batch_and_refuses_an_empty_batch():
    logits, embeddings, masks = objective_inputs()
    objective = CosegObjective({"dice": 1.0}, triplet_weight=1.0, triplet=ISTripletLoss(k_per_class=4))
    with pytest.raises(ValueError, match=r"embeddings \(one map per mask_logits image\) must have shape "
                                         r"\(2, D, h, w\), got \(1, 4, 2, 2\)"):
        objective(logits, embeddings[:1], masks)
    with pytest.raises(ValueError, match="mask_logits must hold at least one image"):
        objective(logits[:0], embeddings[:0], masks[:0])


def test_score_image_refuses_probabilities_and_masks_that_are_not_2d():
    gt = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match=r"x.png: prediction must be a 0/1 mask.*threshold"):
        score_image(np.full((4, 4), 0.2), gt, name="x.png")  # scored P = J = 1 as "non-zero = foreground"
    with pytest.raises(ValueError, match="ground truth must be a 0/1 mask"):
        score_image(gt, np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match=r"prediction must be an \(H, W\) mask of at least one pixel, got shape "
                                         r"\(16,\)"):
        score_image(np.ones(16, bool), np.ones(16, bool))
    with pytest.raises(ValueError, match="at least one pixel"):
        score_image(np.ones((0, 3), bool), np.ones((0, 3), bool))
    assert score_image(np.eye(4), np.eye(4, dtype=np.float32)).J == 1.0
    assert score_image(np.eye(4, dtype=np.uint8) * 255, np.eye(4, dtype=bool)).P == 1.0


def test_summarize_checks_the_empty_policy_without_scores():
    with pytest.raises(ValueError, match="empty must be one of exclude, zero, got 'bogus'"):
        summarize([], empty="bogus")  # type: ignore[arg-type]


def test_edge_filter_refuses_0_255_images():
    probs = torch.rand(1, 1, 16, 16)
    images = torch.rand(1, 3, 16, 16)
    with pytest.raises(TypeError, match=r"edge filter images must be float in \[0, 1\].*uint8"):
        EdgeFilter()(probs, (images * 255).byte())


def test_colour_cut_of_an_empty_group_and_of_probabilities_outside_0_1():
    cut = GroupColourCut()
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert cut(images[:0], torch.rand(0, 1, 8, 8)).shape == (0, 1, 16, 16)
    for bad in (torch.full((2, 1, 8, 8), float("nan")), torch.rand(2, 1, 8, 8) * 255):
        with pytest.raises(ValueError, match=r"colour cut probs must be foreground probabilities in \[0, 1\]"):
            cut(images, bad)


@pytest.mark.parametrize("size", [0, 33.5, True])
def test_datasets_refuse_an_image_size_that_is_not_a_positive_integer(tmp_path, size):
    root = make_synthetic_coseg(tmp_path, num_groups=1, images_per_group=1, size=32)
    samples = find_samples(root).samples
    with pytest.raises(ValueError, match=f"image_size must be an integer >= 1, got {size}"):
        CosegDataset(samples, size)
    with pytest.raises(ValueError, match=f"image_size must be an integer >= 1, got {size}"):  # an OpenCV error
        ImageFileDataset([s.image for s in samples], size)  # when the first image was read


def test_synthetic_data_of_no_image_or_no_pixel_is_refused(tmp_path):
    for counts in ({"num_groups": 0}, {"images_per_group": 0}):  # wrote nothing, not even the folder
        with pytest.raises(ValueError, match="num_groups and images_per_group must be >= 1"):
            make_synthetic_coseg(tmp_path, **counts)
    with pytest.raises(ValueError, match=r"size must be >= 1 \(pixels\), got 0"):  # an OpenCV assertion
        make_synthetic_coseg(tmp_path, size=0)
    assert not any(tmp_path.iterdir())


def test_score_image_takes_cpu_tensors():
    pred = torch.zeros(4, 4, dtype=torch.bool)
    pred[:2] = True
    score = score_image(pred, torch.ones(4, 4, dtype=torch.uint8))  # 'Tensor' object has no attribute 'astype'
    assert score.P == 0.5 and score.J == 0.5


@pytest.mark.parametrize("make, message", [
    (lambda: GroupRefinement(iterations=1.5), "refinement iterations must be an integer >= 0, got 1.5"),
    (lambda: GroupColourCut(iterations=2.5), "colour cut iterations must be an integer >= 1, got 2.5"),
    (lambda: GroupColourCut(max_fit_images=True), "colour cut max_fit_images must be an integer >= 1, got True"),
    (lambda: GroupColourCut(max_fit_pixels=4e6), "colour cut max_fit_pixels must be an integer >= 1, got 4000000.0"),
    (lambda: EdgeFilter(subsample=2.0), "edge filter subsample must be an integer >= 1, got 2.0"),
])
def test_inference_steps_refuse_counts_that_are_no_integers_when_built(make, message):
    # was: accepted, then an error from Python, kornia or OpenCV when first called
    with pytest.raises(ValueError, match=re.escape(message)):
        make()
    assert GroupRefinement(iterations=np.int64(1)).iterations == 1  # numpy integers are integers
