"""The edge filter's coarse grid is centred: a mirrored image gets the mirrored mask, and nothing moves."""
import pytest
import torch

from coseg.models import EdgeFilter, create_model
from tests.helpers import assert_close


@pytest.mark.parametrize("size", [(224, 224), (64, 70), (37, 96)])
def test_the_filter_commutes_with_mirroring(size):
    torch.manual_seed(0)
    images, probs = torch.rand(2, 3, *size, dtype=torch.float64), torch.rand(2, 1, *size, dtype=torch.float64)
    edge_filter = EdgeFilter()  # the default: coefficients on a 4 times coarser grid
    out = edge_filter(probs, images)
    for dims in ([-1], [-2], [-2, -1]):
        assert_close(edge_filter(probs.flip(dims), images.flip(dims)).flip(dims), out, atol=1e-9, rtol=0)


def test_a_smooth_bump_stays_where_it_is():
    xs = torch.arange(224, dtype=torch.float64)
    probs = (0.05 + 0.9 * torch.exp(-((xs - 112.3) / 22.4) ** 2 / 2)).expand(1, 1, 224, 224).contiguous()
    out = EdgeFilter()(probs, torch.full((1, 3, 224, 224), 0.5, dtype=torch.float64))[0, 0]

    def centre(p: torch.Tensor) -> torch.Tensor:
        return ((p - 0.05) * xs).sum(-1) / (p - 0.05).sum(-1)

    # kornia's guided_blur read every 4th pixel: the bump moved 1.5 px right (and down)
    assert (centre(out) - centre(probs[0, 0])).abs().max() < 0.05
    assert (centre(out.T) - centre(probs[0, 0].T)).abs().max() < 0.05


def test_a_mirrored_group_gets_the_mirrored_masks_with_flip_and_the_edge_filter():
    torch.manual_seed(0)
    model = create_model("unet", weights=None, embedding_dim=4, group_levels=1).eval()
    images = torch.rand(3, 3, 64, 64)
    edges = EdgeFilter()
    plain = model.predict_group(images, flip=True, edges=edges)
    assert_close(model.predict_group(images.flip(-1), flip=True, edges=edges).flip(-1), plain, atol=1e-5, rtol=0)
