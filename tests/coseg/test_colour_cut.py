import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coseg.models import GroupColourCut
from coseg.scores import score_image

SIZE = 64


def disc(cx: int, cy: int, r: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2


def red_objects(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n images of a red disc (a different place and size in each) on a noisy green-grey background:
    uint8 (n, 3, S, S) and the true masks (n, S, S) bool."""
    g = torch.Generator().manual_seed(seed)
    images, masks = [], []
    for i in range(n):
        mask = disc(20 + 4 * i, 28 + 3 * i, 12 + i)
        image = torch.stack([torch.full((SIZE, SIZE), 0.3), torch.full((SIZE, SIZE), 0.55),
                             torch.full((SIZE, SIZE), 0.4)])
        image[:, mask] = torch.tensor([0.85, 0.15, 0.1])[:, None]
        images.append((image + 0.06 * torch.randn(image.shape, generator=g)).clamp(0, 1).mul(255).round().byte())
        masks.append(mask)
    return torch.stack(images), torch.stack(masks)


def flawed_guess(masks: torch.Tensor) -> torch.Tensor:
    """What a network might say: confident inside most of each object, unsure (0.4) over its right part, and
    a false unsure patch (0.6) in a background corner. (n, 1, S, S)."""
    probs = torch.where(masks, 0.95, 0.05)
    for m, p in zip(masks, probs):
        cols = m.any(0).nonzero()[:, 0]
        right = int(cols.float().mean())
        p[:, right:][m[:, right:]] = 0.4
        p[:4, -6:] = 0.6
    return probs.unsqueeze(1)


def mean_j(pred: torch.Tensor, masks: torch.Tensor) -> float:
    return float(np.mean([score_image(p[0].numpy() > 0.5, m.numpy()).J for p, m in zip(pred, masks)]))


def test_colour_cut_recovers_what_the_guess_missed():
    images, masks = red_objects(4)
    guess = flawed_guess(masks)
    cut = GroupColourCut()(images, guess)
    assert cut.shape == guess.shape and cut.dtype == torch.float32
    assert set(cut.unique().tolist()) <= {0.0, 1.0}
    assert mean_j(guess, masks) < 0.85
    assert mean_j(cut, masks) > 0.97
    # confident pixels keep their label
    assert bool((cut[guess >= 0.9] == 1).all()) and bool((cut[guess <= 0.1] == 0).all())


def test_the_group_colours_help_an_image_the_network_was_unsure_about():
    """One image has no confident pixel at all: alone there is nothing to learn colours from (its guess is only
    thresholded); in its group it is cut with the others' colours."""
    images, masks = red_objects(4)
    guess = flawed_guess(masks)
    guess[2] = torch.where(masks[2], 0.45, 0.3).unsqueeze(0)  # under-confident everywhere: all background at 0.5
    alone = GroupColourCut()(images[2:3], guess[2:3])
    assert torch.equal(alone, (guess[2:3] >= 0.5).float())
    grouped = GroupColourCut()(images, guess)
    assert mean_j(grouped[2:3], masks[2:3]) > 0.95


def test_each_mask_does_not_depend_on_the_order_of_the_group():
    images, masks = red_objects(5, seed=3)
    guess = flawed_guess(masks)
    cut = GroupColourCut(max_fit_images=3)(images, guess)
    for order in ([4, 2, 0, 3, 1], [1, 0, 2, 4, 3]):
        perm = torch.tensor(order)
        assert torch.equal(GroupColourCut(max_fit_images=3)(images[perm], guess[perm]), cut[perm])


def test_cuts_run_through_any_map_and_large_groups_fit_on_a_subset():
    from concurrent.futures import ThreadPoolExecutor

    images, masks = red_objects(6, seed=1)
    guess = flawed_guess(masks)
    colour = GroupColourCut(iterations=2, max_fit_images=2)
    with ThreadPoolExecutor(3) as pool:
        threaded = colour(images, guess, pool.map)
    assert torch.equal(threaded, colour(images, guess))
    assert mean_j(threaded, masks) > 0.95


def test_nothing_to_learn_from_gives_the_thresholded_guess():
    images, masks = red_objects(3)
    for probs in (torch.zeros(3, 1, SIZE, SIZE), torch.ones(3, 1, SIZE, SIZE)):
        assert torch.equal(GroupColourCut()(images, probs), (probs >= 0.5).float())


def test_a_probability_of_one_half_is_foreground_as_in_foreground_at_size():
    """p = 0.5 exactly is foreground everywhere (``foreground_at_size``: ``>= 0.5``), in the cut too: in its
    trimap (probable foreground) and in its fallback when there is nothing to learn colours from."""
    import cv2

    from coseg.inference import foreground_at_size

    half = torch.full((2, 1, 4, 4), 0.5)
    assert foreground_at_size(half[0, 0], (4, 4)).all()
    colour = GroupColourCut()
    assert (colour.trimap(half.numpy()[:, 0]) == cv2.GC_PR_FGD).all()
    images = torch.full((2, 3, 4, 4), 90, dtype=torch.uint8)
    assert torch.equal(colour(images, half), torch.ones_like(half))  # no confident pixel: the fallback


def test_bad_input_is_a_clear_error():
    images, masks = red_objects(2)
    guess = flawed_guess(masks)
    with pytest.raises(TypeError, match="uint8"):
        GroupColourCut()(images.float() / 255, guess)
    with pytest.raises(ValueError, match="probs"):
        GroupColourCut()(images, guess[:1])
    with pytest.raises(ValueError, match="iterations"):
        GroupColourCut(iterations=0)
    with pytest.raises(ValueError, match="sure"):
        GroupColourCut(sure=0.5)
    with pytest.raises(ValueError, match="max_fit_images"):
        GroupColourCut(max_fit_images=0)
    with pytest.raises(ValueError, match="max_fit_pixels"):
        GroupColourCut(max_fit_pixels=0)
    with pytest.raises(ValueError, match="scale"):
        GroupColourCut(scale=0.5)
    with pytest.raises(ValueError, match="larger than the images"):
        GroupColourCut()(images[:, :, ::2, ::2].contiguous(), guess)


def test_the_cut_size_follows_the_scale():
    assert GroupColourCut().size_for(224) == 336
    assert GroupColourCut(scale=1).size_for(224) == 224
    assert GroupColourCut(scale=2).size_for(100) == 200


def test_smaller_probabilities_are_upsampled_to_the_images():
    images, masks = red_objects(3, seed=2)
    guess = flawed_guess(masks)[:, :, ::2, ::2].contiguous()  # (3, 1, 32, 32) for 64-px images
    upsampled = F.interpolate(guess, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    cut = GroupColourCut()(images, guess)
    assert cut.shape == (3, 1, SIZE, SIZE)
    assert torch.equal(cut, GroupColourCut()(images, upsampled))
    assert not torch.equal(cut, GroupColourCut()(images, F.interpolate(guess, size=(SIZE, SIZE), mode="nearest")))
    nothing = torch.zeros(3, 1, 32, 32)  # nothing to learn from: the upsampled probabilities thresholded
    assert torch.equal(GroupColourCut()(images, nothing), torch.zeros(3, 1, SIZE, SIZE))


def test_a_larger_cut_keeps_thin_parts_the_model_size_loses():
    """A red disc with a 1-px red arm, seen by the model at a third of the image's side, where the arm is under a
    pixel wide and the model misses it: cut at the model's size (then upsampled), the arm stays lost; cut on the
    full-size image with the probabilities upsampled, the group's red comes back along it."""
    n, big, small = 3, 96, 32
    yy, xx = torch.meshgrid(torch.arange(big), torch.arange(big), indexing="ij")
    g = torch.Generator().manual_seed(0)
    images, masks, arms = [], [], []
    for i in range(n):
        body = (yy - 48 - 2 * i) ** 2 + (xx - 30 - 3 * i) ** 2 < (14 + i) ** 2
        arm = (yy == 48 - 2 * i) & (xx >= 30 + 3 * i) & (xx < 88)
        arm &= ~body
        mask = body | arm
        image = torch.stack([torch.full((big, big), 0.3), torch.full((big, big), 0.55), torch.full((big, big), 0.4)])
        image[:, mask] = torch.tensor([0.85, 0.15, 0.1])[:, None]
        images.append((image + 0.04 * torch.randn(image.shape, generator=g)).clamp(0, 1).mul(255).round().byte())
        masks.append(mask)
        arms.append(arm)
    images, masks, arms = torch.stack(images), torch.stack(masks), torch.stack(arms)
    # the model's view: the body found, the arm's faint trace unsure (below 0.5), everything else background
    small_masks = F.interpolate(masks[:, None].float(), size=(small, small), mode="area")
    small_body = F.interpolate((masks & ~arms)[:, None].float(), size=(small, small), mode="area")
    probs = torch.where(small_body > 0.5, 0.95, torch.where(small_masks > 0, 0.3, 0.05))
    small_images = F.interpolate(images.float(), size=(small, small), mode="area").round().byte()

    at_model_size = F.interpolate(GroupColourCut()(small_images, probs), size=(big, big), mode="nearest")[:, 0] > 0.5
    at_image_size = GroupColourCut()(images, probs)[:, 0] > 0.5
    recall = lambda pred: float((pred & arms).sum() / arms.sum())  # noqa: E731
    assert recall(at_model_size) < 0.3
    assert recall(at_image_size) > 0.8
    assert mean_j(at_image_size[:, None].float(), masks) > mean_j(at_model_size[:, None].float(), masks) + 0.05


def test_degenerate_groups_are_cut():
    red, blue = torch.tensor([200, 30, 30], dtype=torch.uint8), torch.tensor([30, 30, 200], dtype=torch.uint8)
    # one-pixel images (OpenCV's graph cut of a lone pixel has no edge and failed): the uncertain ones by colour
    pixels = torch.stack([red, red, blue, blue, red, blue]).view(6, 3, 1, 1)
    probs = torch.tensor([0.95, 0.97, 0.02, 0.05, 0.4, 0.6]).view(6, 1, 1, 1)
    assert GroupColourCut()(pixels, probs).flatten().tolist() == [1, 1, 0, 0, 1, 0]
    # one-pixel-wide images
    column = torch.cat([red.view(1, 3, 1, 1).expand(2, 3, 4, 1), blue.view(1, 3, 1, 1).expand(2, 3, 4, 1)], 2)
    probs = torch.tensor([0.95] * 3 + [0.4] + [0.02] * 3 + [0.6]).view(1, 1, 8, 1).expand(2, 1, 8, 1)
    assert GroupColourCut()(column.contiguous(), probs.contiguous())[:, 0, :, 0].tolist() == [[1] * 4 + [0] * 4] * 2
    # a constant colour: nothing tells the uncertain pixels apart, the confident ones stay
    constant = torch.full((2, 3, 8, 8), 90, dtype=torch.uint8)
    probs = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    masks = GroupColourCut()(constant, probs)
    assert masks.shape == (2, 1, 8, 8) and set(masks.unique().tolist()) <= {0.0, 1.0}
    assert masks[probs >= 0.9].all() and not masks[probs <= 0.1].any()
    # all foreground, all background: the thresholded guess
    for value in (0.0, 1.0):
        assert torch.equal(GroupColourCut()(constant, torch.full((2, 1, 8, 8), value)), torch.full((2, 1, 8, 8), value))


def recording_grabcut(monkeypatch: pytest.MonkeyPatch, stop_at_fit: bool = False) -> list[tuple[int, tuple[int, ...]]]:
    """cv2.grabCut replaced by one recording each call's (mode, image shape), then running the real one (or, with
    ``stop_at_fit``, raising at the fit instead)."""
    import cv2

    calls, grab_cut = [], cv2.grabCut

    def recording(image, mask, rect, background, foreground, iterations, mode):
        calls.append((mode, image.shape))
        if stop_at_fit and mode == cv2.GC_INIT_WITH_MASK:
            raise InterruptedError("fit reached")
        return grab_cut(image, mask, rect, background, foreground, iterations, mode)

    monkeypatch.setattr(cv2, "grabCut", recording)
    return calls


def test_the_fit_on_large_images_is_bounded_by_default(monkeypatch):
    """16 images of 600 px (5.8 M pixels; 1536 px at ``--image-size 1024`` made it 38 M, 7.5 GB): the colour models
    are fitted on at most the default 4 M pixels."""
    import cv2

    n, side = 16, 600
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    probs = torch.where((yy - 300) ** 2 + (xx - 300) ** 2 < 150 ** 2, 0.95, 0.05).expand(n, 1, side, side)
    images = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    calls = recording_grabcut(monkeypatch, stop_at_fit=True)
    with pytest.raises(InterruptedError):
        GroupColourCut()(images, probs.contiguous())
    (mode, (height, width, _)), = calls
    assert mode == cv2.GC_INIT_WITH_MASK
    assert 3_900_000 <= height * width <= 4_000_000
    assert height == n * (height // n) and abs(height // n - width) <= 1  # each image shrunk alike, kept square


def test_a_fit_over_the_budget_is_shrunk_and_the_cut_stays_full_size(monkeypatch):
    import cv2

    images, masks = red_objects(4)
    guess = flawed_guess(masks)
    calls = recording_grabcut(monkeypatch)
    cut = GroupColourCut(max_fit_pixels=4 * 32 * 32)(images, guess)
    assert calls[0] == (cv2.GC_INIT_WITH_MASK, (4 * 32, 32, 3))
    assert calls[1:] == [(cv2.GC_EVAL_FREEZE_MODEL, (SIZE, SIZE, 3))] * 4
    assert cut.shape == (4, 1, SIZE, SIZE)
    assert mean_j(cut, masks) > 0.95


def test_the_default_size_is_fitted_whole_and_cut_as_without_the_bound(monkeypatch):
    """At the default input side (224 px, the cut at 336 px), a full group of 16 images is fitted whole: the masks
    are those of an unbounded fit, to the byte."""
    import cv2

    n, side, cut_side = 16, 224, GroupColourCut().size_for(224)
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(cut_side), torch.arange(cut_side), indexing="ij")
    blob = ((yy - 160) ** 2 + (xx - 170) ** 2 < 90 ** 2)
    images = torch.where(blob, torch.tensor([200, 60, 40])[:, None, None], torch.tensor([80, 140, 100])[:, None, None])
    images = (images + 30 * torch.randn(n, 3, cut_side, cut_side, generator=g)).clamp(0, 255).round().byte()
    probs = F.interpolate(blob[None, None].float(), size=(side, side), mode="area").expand(n, 1, side, side)
    probs = (0.05 + 0.9 * probs + 0.2 * torch.rand(n, 1, side, side, generator=g)).clamp(0, 1)
    calls = recording_grabcut(monkeypatch)
    bounded = GroupColourCut()(images, probs)
    assert calls[0] == (cv2.GC_INIT_WITH_MASK, (n * cut_side, cut_side, 3))
    assert torch.equal(bounded, GroupColourCut(max_fit_pixels=10 ** 12)(images, probs))
    assert 0.1 < float(bounded.mean()) < 0.5


@pytest.mark.parametrize("n, height, width, budget", [(16, 1536, 1536, 4_000_000), (3, 1000, 7, 500),
                                                      (2, 7, 1000, 500), (16, 10 ** 6, 1, 1000), (5, 1, 1, 3)])
def test_the_fit_shape_keeps_to_the_budget(n, height, width, budget):
    shrunk, narrowed = GroupColourCut(max_fit_pixels=budget).fit_shape(n, height, width)
    assert 1 <= shrunk <= height and 1 <= narrowed <= width
    assert n * shrunk * narrowed <= max(budget, n)
    assert GroupColourCut(max_fit_pixels=n * height * width).fit_shape(n, height, width) == (height, width)


@pytest.mark.parametrize("scale", [4.5, 1e9])
def test_a_cut_scale_beyond_the_largest_is_refused(scale, tmp_path):
    """--colour-scale 1e9 crashed in OpenCV's resize after predict.json was written; 100 asked for images of 22,400 px
    a side at 224 px."""
    from click.testing import CliRunner

    from apps.cli import main

    with pytest.raises(ValueError, match=r"scale must be a finite number in \[1, 4\]"):
        GroupColourCut(scale=scale)
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"")  # never read: the option is refused first
    result = CliRunner().invoke(main, ["predict", "--checkpoint", str(model), "--input", str(tmp_path), "--output",
                                       str(tmp_path / "out"), "--colour-scale", str(scale)])
    assert result.exit_code == 2 and "Invalid value for '--colour-scale'" in result.output, result.output
    assert not (tmp_path / "out").exists()
    GroupColourCut(scale=4)
