"""Pixel sampling: counts per class per image, ignore_index, hard-pixel preference, reproducibility, errors."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from metric.miners.pixel_sampler import boundary_mask, pixel_hardness, present_classes, sample_pixels
from tests.reference import pixel as ref


def square_masks(b: int = 3, size: int = 16, ignore_index: int = 255) -> torch.Tensor:
    """Images with a foreground square, an ignored border row and (image 1) no foreground at all."""
    labels = torch.zeros(b, size, size, dtype=torch.long)
    labels[:, 4:11, 5:12] = 1
    labels[1] = 0
    labels[:, 0, :] = ignore_index
    return labels


def generator(seed: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def counts(sample) -> Counter:
    return Counter(zip(sample.image.tolist(), sample.label.tolist()))


@pytest.mark.parametrize("strategy", ["random", "hard"])
@pytest.mark.parametrize("ignore_index", [255, -100])
def test_samples_k_per_class_per_image_and_never_ignored(strategy, ignore_index, device):
    labels = square_masks(ignore_index=ignore_index).to(device)
    probabilities = torch.rand(labels.shape, device=device)
    k = 30
    sample = sample_pixels(
        labels, k, strategy, probabilities, ignore_index=ignore_index, generator=generator(0, device)
    )
    flat = labels.flatten()
    assert (flat[sample.index] != ignore_index).all()
    assert torch.equal(flat[sample.index], sample.label)
    assert torch.equal(sample.index // labels[0].numel(), sample.image)
    assert sample.index.unique().numel() == sample.index.numel()
    expected = Counter()
    for image in range(labels.shape[0]):
        for c in (0, 1):
            available = int((labels[image] == c).sum())
            if available:
                expected[(image, c)] = min(k, available)
    assert counts(sample) == expected
    assert counts(sample)[(0, 1)] == 30 and (1, 1) not in counts(sample)  # empty class → fewer samples


def test_small_class_gives_all_its_pixels_and_k_larger_than_image():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 1, 1] = 1
    sample = sample_pixels(labels, 100, "hard", generator=generator())
    assert sample.index.numel() == 16
    assert sorted(sample.index.tolist()) == list(range(16))


def test_ordered_by_image_then_class():
    sample = sample_pixels(square_masks(), 5, generator=generator())
    keys = list(zip(sample.image.tolist(), sample.label.tolist()))
    assert keys == sorted(keys)


def test_all_ignored_gives_an_empty_sample():
    sample = sample_pixels(torch.full((2, 5, 5), 255), 4, "hard", generator=generator())
    assert all(t.numel() == 0 and t.dtype == torch.long for t in sample)


@pytest.mark.parametrize("shape", [(0, 5, 5), (2, 0, 5), (2, 5, 0)])
@pytest.mark.parametrize("strategy", ["random", "hard"])
def test_no_image_or_no_pixel_gives_an_empty_sample(shape, strategy):
    labels = torch.zeros(shape, dtype=torch.long)
    sample = sample_pixels(labels, 4, strategy, torch.zeros(shape) if strategy == "hard" else None)
    assert all(t.numel() == 0 and t.dtype == torch.long for t in sample)
    assert present_classes(labels).numel() == 0


@pytest.mark.parametrize("width", [1, 2])
def test_boundary_mask_matches_reference(width):
    labels = torch.randint(0, 3, (2, 7, 9))
    labels[0, 2:5, 3:6] = 255
    assert torch.equal(boundary_mask(labels, width, 255), ref.boundary(labels, width, 255))


def test_hardness_adds_prediction_error_but_on_ignored_pixels():
    """|p − 255| made ignored pixels up to 255 "hard" (outside the documented [0, 2])."""
    labels = square_masks()
    labels[:, :2] = 255
    probabilities = torch.rand(labels.shape)
    hardness = pixel_hardness(labels, probabilities, 1)
    assert (hardness[:, :2] == 0).all() and 0 <= hardness.min() and hardness.max() <= 2
    kept = labels != 255
    assert torch.equal(hardness[kept],
                       (boundary_mask(labels, 1).float() + (probabilities - labels.float()).abs())[kept])


def test_hard_without_random_share_takes_only_boundary_pixels():
    labels = square_masks()
    band = boundary_mask(labels, 1).flatten()
    for seed in range(5):
        sample = sample_pixels(labels, 10, "hard", random_share=0.0, boundary_width=1, generator=generator(seed))
        with_boundary = sample.image != 1  # image 1 has one class: no boundary, so uniform
        assert band[sample.index[with_boundary]].all() and with_boundary.sum() == 40


def test_hard_prefers_boundary_pixels_over_random():
    labels = square_masks(b=8, size=32)
    labels[:, 6:26, 6:26] = 1
    labels[1] = 0
    band = boundary_mask(labels, 2).flatten()
    share = {}
    for strategy in ("random", "hard"):
        on_band = [band[sample_pixels(labels, 40, strategy, generator=generator(s)).index].float().mean()
                   for s in range(10)]
        share[strategy] = float(torch.stack(on_band).mean())
    # Band: ~23% of the pixels; hard = half uniform, half band-proportional.
    assert share["random"] < 0.35 and share["hard"] > 0.55, share


def test_hard_prefers_mispredicted_pixels():
    labels = torch.zeros(4, 32, 32, dtype=torch.long)
    labels[:, 8:24, 8:24] = 1
    probabilities = labels.float().clone()
    probabilities[:, 26:32, :] = 0.9  # confidently wrong background strip, away from the boundary
    wrong = (probabilities - labels.float()).abs().flatten() > 0.5
    background_share = float(wrong.sum()) / float((labels == 0).sum())
    picked = [
        wrong[sample_pixels(labels, 40, "hard", probabilities, random_share=0.2, boundary_width=1,
                            generator=generator(s)).index]
        for s in range(10)
    ]
    sampled_background = torch.cat([p.view(4, 2, 40)[:, 0] for p in picked]).float().mean()
    assert float(sampled_background) > 2 * background_share


def test_random_share_one_is_uniform_sampling():
    labels = square_masks()
    probabilities = torch.rand(labels.shape)
    hard = sample_pixels(labels, 12, "hard", probabilities, random_share=1.0, generator=generator(3))
    uniform = sample_pixels(labels, 12, "random", generator=generator(3))
    assert all(torch.equal(a, b) for a, b in zip(hard, uniform))


def test_random_strategy_is_uniform_within_a_class():
    labels = torch.zeros(1, 4, 5, dtype=torch.long)
    labels[0, :, :2] = 1  # 8 foreground pixels, 12 background
    draws = 3000
    hits = Counter()
    g = generator(1)
    for _ in range(draws):
        hits.update(sample_pixels(labels, 3, "random", generator=g).index.tolist())
    for pixel in range(20):
        available = 8 if pixel % 5 < 2 else 12
        assert abs(hits[pixel] / draws - 3 / available) < 0.05


def test_reproducible_with_a_generator():
    labels = square_masks()
    a = sample_pixels(labels, 7, "hard", generator=generator(5))
    b = sample_pixels(labels, 7, "hard", generator=generator(5))
    c = sample_pixels(labels, 7, "hard", generator=generator(6))
    assert torch.equal(a.index, b.index) and not torch.equal(a.index, c.index)


def test_present_classes_for_small_and_huge_label_values():
    assert present_classes(torch.tensor([[3, 255, 0], [3, 3, 255]])).tolist() == [0, 3]
    assert present_classes(torch.tensor([-100, 2, 7]), ignore_index=-100).tolist() == [2, 7]
    assert present_classes(torch.tensor([10**9, 4, 255, 4])).tolist() == [4, 10**9]


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.uint8], ids=str)
def test_narrow_integer_labels_give_their_int64_classes(dtype):
    """int8/int16 class ids spanning more than half their range overflowed ``labels − min`` (bincount crashed on
    the negative values); every path returns int64 classes, as PixelSample promises."""
    info = torch.iinfo(dtype)
    low, high = max(info.min, -40000), min(info.max, 70000)  # int32: a span of 110,000 takes torch.unique's path
    labels = torch.tensor([[[low, 0], [high, high]]], dtype=dtype)
    assert present_classes(labels, ignore_index=-1).tolist() == sorted({low, 0, high})
    sample = sample_pixels(labels, 2, ignore_index=-1)
    assert sample.label.dtype == torch.long and sample.label.tolist() == sorted([low, 0, high, high])


def test_rejects_bad_inputs():
    labels = square_masks()
    with pytest.raises(TypeError, match="integer"):
        sample_pixels(labels.float(), 4)
    with pytest.raises(ValueError, match=r"labels must have shape \(B, H, W\)"):
        sample_pixels(labels[0], 4)
    with pytest.raises(ValueError, match="same shape"):
        sample_pixels(labels, 4, "hard", torch.rand(3, 16, 15))
    with pytest.raises(ValueError, match=r"probabilities must be on the device of labels \(cpu\), got meta"):
        sample_pixels(labels, 4, "hard", torch.rand(labels.shape, device="meta"))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sample_pixels(labels, 4, "hard", torch.rand(labels.shape) + 1)
    with pytest.raises(ValueError, match="NaN"):
        sample_pixels(labels, 4, "hard", torch.full(labels.shape, float("nan")))
    with pytest.raises(ValueError, match="labels must be 0/1"):
        sample_pixels(labels + 1, 4, "hard", torch.rand(labels.shape))
    with pytest.raises(ValueError, match="strategy"):
        sample_pixels(labels, 4, "hardest")
    with pytest.raises(ValueError, match="k_per_class"):
        sample_pixels(labels, 0)
    with pytest.raises(ValueError, match="random_share"):
        sample_pixels(labels, 4, "hard", random_share=1.5)
    with pytest.raises(ValueError, match="boundary_width"):
        sample_pixels(labels, 4, "hard", boundary_width=0)


def test_boundary_between_class_ids_beyond_float32s_integers():
    """Ids 2**24 and 2**24 + 1 are one float32: their boundary was missed."""
    labels = torch.full((1, 4, 6), 2**24, dtype=torch.int64)
    labels[..., 3:] += 1
    assert torch.equal(boundary_mask(labels, 1, 255), ref.boundary(labels, 1, 255))
    assert boundary_mask(labels, 1, 255)[0, :, 2:4].all()
