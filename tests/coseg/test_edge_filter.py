from typing import Union

import numpy as np
import pytest
import torch

from coseg.models import EdgeFilter, create_model
from tests.helpers import assert_close


def naive_guided_filter(image: np.ndarray, p: np.ndarray, r: Union[int, tuple[int, int]], eps: float) -> np.ndarray:
    """He et al.'s guided filter with a colour guide, pixel by pixel: image (H, W, 3), p (H, W), windows of
    (2r+1)² pixels (or (2ry+1) × (2rx+1) for r = (ry, rx)) with mirrored borders (edge pixel not repeated)."""
    h, w = p.shape
    ry, rx = (r, r) if isinstance(r, int) else r
    pad_i = np.pad(image, ((ry, ry), (rx, rx), (0, 0)), mode="reflect")
    pad_p = np.pad(p, ((ry, ry), (rx, rx)), mode="reflect")
    a = np.zeros((h, w, 3))
    b = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            win_i = pad_i[y:y + 2 * ry + 1, x:x + 2 * rx + 1].reshape(-1, 3)
            win_p = pad_p[y:y + 2 * ry + 1, x:x + 2 * rx + 1].reshape(-1)
            mean_i, mean_p = win_i.mean(0), win_p.mean()
            cov = (win_i[:, :, None] * win_i[:, None, :]).mean(0) - np.outer(mean_i, mean_i)
            cov_ip = (win_i * win_p[:, None]).mean(0) - mean_i * mean_p
            a[y, x] = np.linalg.solve(cov + eps * np.eye(3), cov_ip)
            b[y, x] = mean_p - a[y, x] @ mean_i
    pad_a = np.pad(a, ((ry, ry), (rx, rx), (0, 0)), mode="reflect")
    pad_b = np.pad(b, ((ry, ry), (rx, rx)), mode="reflect")
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            mean_a = pad_a[y:y + 2 * ry + 1, x:x + 2 * rx + 1].reshape(-1, 3).mean(0)
            mean_b = pad_b[y:y + 2 * ry + 1, x:x + 2 * rx + 1].mean()
            out[y, x] = mean_a @ image[y, x] + mean_b
    return np.clip(out, 0, 1)


def test_matches_the_guided_filter_computed_pixel_by_pixel():
    torch.manual_seed(0)
    images, probs = torch.rand(2, 3, 9, 11, dtype=torch.float64), torch.rand(2, 1, 9, 11, dtype=torch.float64)
    edge_filter = EdgeFilter(radius=0.2, eps=1e-2, subsample=1)
    assert edge_filter.window(9, 11) == 5  # radius round(0.2 * 11) = 2 pixels
    out = edge_filter(probs, images)
    assert out.shape == probs.shape and out.dtype == probs.dtype
    for i in range(2):
        expected = naive_guided_filter(images[i].permute(1, 2, 0).numpy(), probs[i, 0].numpy(), 2, 1e-2)
        assert_close(out[i, 0], torch.from_numpy(expected), atol=1e-9, rtol=1e-7)


def test_a_window_wider_than_the_image_spans_it_on_that_axis():
    torch.manual_seed(0)
    images, probs = torch.rand(1, 3, 5, 12, dtype=torch.float64), torch.rand(1, 1, 5, 12, dtype=torch.float64)
    edge_filter = EdgeFilter(radius=1.0, eps=1e-2, subsample=1)  # a 25-pixel window: 9 rows and 23 columns fit
    assert edge_filter.kernel(5, 12, 1) == (9, 23)
    expected = naive_guided_filter(images[0].permute(1, 2, 0).numpy(), probs[0, 0].numpy(), (4, 11), 1e-2)
    assert_close(edge_filter(probs, images)[0, 0], torch.from_numpy(expected), atol=1e-9, rtol=1e-7)
    for size in ((224, 224), (32, 1024), (1024, 32)):  # the largest radius, an extreme aspect ratio; coarse grid
        for radius in (0.08, 1.0):
            out = EdgeFilter(radius=radius)(torch.rand(1, 1, *size), torch.rand(1, 3, *size))
            assert out.shape == (1, 1, *size) and out.min() >= 0 and out.max() <= 1


def test_mask_boundary_moves_onto_the_image_edge():
    # dark left half, bright right half; the predicted boundary is a soft ramp three pixels right of the edge
    image = torch.zeros(1, 3, 48, 48)
    image[..., 24:] = 1.0
    image += 0.01 * torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    columns = torch.arange(48, dtype=torch.float32)
    probs = torch.sigmoid((columns - 27) / 3).expand(1, 1, 48, 48).contiguous()
    assert (probs[0, 0, 0] >= 0.5).nonzero()[0].item() == 27
    assert probs[0, 0].diff(dim=1).argmax(dim=1).eq(26).all()  # steepest between columns 26 and 27
    for subsample in (1, 4):
        for radius in (0.05, 0.1, 0.2)[subsample > 1:]:  # coefficients on a 12-pixel grid need a wider window
            out = EdgeFilter(radius=radius, eps=1e-3, subsample=subsample)(probs, image)[0, 0]
            assert out.min() >= 0 and out.max() <= 1
            jump = out.diff(dim=1).argmax(dim=1)  # the steepest step is at the edge (from a 4x coarser grid of
            assert (jump - 23).abs().le(subsample > 1).all(), (subsample, radius)  # coefficients: within a pixel)
        foreground = out >= 0.5  # a window wide enough to span the ramp puts the boundary on the edge
        assert foreground[:, 24:].all() and not foreground[:, :24].any(), subsample


def test_leaves_a_constant_probability_alone_and_keeps_the_range():
    images = torch.rand(3, 3, 32, 40)
    constant = torch.full((3, 1, 32, 40), 0.3)
    assert_close(EdgeFilter()(constant, images), constant, atol=1e-5, rtol=0)
    out = EdgeFilter(eps=1e-5)(torch.rand(3, 1, 32, 40), images)
    assert out.min() >= 0 and out.max() <= 1


def test_subsampled_coefficients_stay_close_to_the_full_filter_on_a_smooth_mask():
    torch.manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    probs = torch.sigmoid(4 - 8 * (xx ** 2 + yy ** 2)).expand(2, 1, 64, 64).contiguous()
    images = (probs.expand(2, 3, 64, 64) * 0.8 + 0.1 + 0.02 * torch.rand(2, 3, 64, 64))
    full = EdgeFilter(subsample=1)(probs, images)
    coarse = EdgeFilter(subsample=4)(probs, images)
    assert (full - coarse).abs().mean() < 0.01


def test_bad_parameters_and_shapes_are_clear_errors():
    for kwargs, message in (({"radius": 0}, "radius"), ({"radius": 1.5}, "radius"), ({"eps": 0}, "eps"),
                            ({"subsample": 0}, "subsample")):
        with pytest.raises(ValueError, match=message):
            EdgeFilter(**kwargs)
    with pytest.raises(ValueError, match="images must have shape"):
        EdgeFilter()(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="probs"):
        EdgeFilter()(torch.rand(2, 1, 8, 9), torch.rand(2, 3, 8, 8))


def test_model_predictions_are_filtered_by_their_own_images():
    torch.manual_seed(0)
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1).eval()
    x = torch.rand(5, 3, 64, 64)
    edge_filter = EdgeFilter(radius=0.1)
    assert_close(model.predict_group(x, chunk_size=2, edges=edge_filter),
                 edge_filter(model.predict_group(x, chunk_size=2), x), atol=1e-6, rtol=0)
    assert_close(model.predict(x, flip=True, edges=edge_filter), edge_filter(model.predict(x, flip=True), x),
                 atol=1e-6, rtol=0)


def test_the_coarse_window_is_an_odd_number_of_cells_so_the_mask_does_not_move():
    for side in range(8, 330, 7):
        for subsample in (1, 2, 3, 4):
            for k in EdgeFilter(subsample=subsample).kernel(side, side, subsample):
                assert (k - 1) % subsample == 0 and ((k - 1) // subsample) % 2 == 0, (side, subsample, k)
    # a smooth bump on a flat image, at the default 224 px and subsample 4 (a 10-cell window moved it 2.5 px left)
    xs = torch.arange(224, dtype=torch.float64)
    probs = (0.05 + 0.9 * torch.exp(-((xs - 112.3) / 22.4) ** 2 / 2)).expand(1, 1, 224, 224).contiguous()
    out = EdgeFilter()(probs, torch.full((1, 3, 224, 224), 0.5, dtype=torch.float64))[0, 0, 0]

    def centre(p: torch.Tensor) -> float:
        return float(((p - 0.05) * xs).sum() / (p - 0.05).sum())

    # the coarse grid samples its cells' centres (kornia's guided_blur read every 4th pixel: it moved 1.5 px)
    assert centre(out) - centre(probs[0, 0, 0]) == pytest.approx(0, abs=0.05)
