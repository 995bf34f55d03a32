"""The adaptive hardness controller: control law by hand, convergence on a simulated plant, limits, state."""
from __future__ import annotations

import math

import pytest
import torch

from metric.miners.adaptive_controller import AdaptiveHardnessController


def test_control_law_by_hand() -> None:
    controller = AdaptiveHardnessController(target_active=0.5, gain=0.2, min_offset=-1.0, max_offset=1.0)
    assert controller.update(0.9) == pytest.approx(0.08)  # too many active triplets: easier negatives
    assert controller.update(0.5) == pytest.approx(0.08)  # on target: unchanged
    assert controller.update(0.0) == pytest.approx(-0.02)  # none active: harder negatives


def test_offset_is_clipped_to_its_range() -> None:
    controller = AdaptiveHardnessController(gain=1.0, min_offset=-0.1, max_offset=0.2)
    for _ in range(5):
        controller.update(1.0)
    assert controller.offset == 0.2
    for _ in range(5):
        controller.update(0.0)
    assert controller.offset == -0.1


@pytest.mark.parametrize("target", [0.2, 0.5, 0.8])
def test_settles_at_the_set_point_on_a_simulated_plant(target: float) -> None:
    """A noisy plant whose active share falls as the offset grows (as with a margin-0.2 triplet loss)."""
    g = torch.Generator().manual_seed(0)

    def active_share(offset: float) -> float:
        mean = 1.0 / (1.0 + math.exp((offset - 0.1) / 0.05))
        return min(1.0, max(0.0, mean + 0.02 * float(torch.randn(1, generator=g))))

    controller = AdaptiveHardnessController(target_active=target, gain=0.05)
    shares = [active_share(controller.update(active_share(controller.offset))) for _ in range(600)]
    late = shares[-200:]
    assert sum(late) / len(late) == pytest.approx(target, abs=0.03)


def test_update_from_losses_uses_the_share_of_positive_losses() -> None:
    controller = AdaptiveHardnessController(target_active=0.5, gain=1.0)
    assert controller.update_from_losses(torch.tensor([0.0, 0.3, 0.0, 0.0])) == pytest.approx(-0.25)
    assert controller.update_from_losses(torch.empty(0)) == pytest.approx(-0.25)


def test_state_dict_round_trip() -> None:
    controller = AdaptiveHardnessController(gain=0.3)
    controller.update(1.0)
    restored = AdaptiveHardnessController(gain=0.3)
    restored.load_state_dict(controller.state_dict())
    assert restored.offset == controller.offset
    with pytest.raises(ValueError, match="outside"):
        restored.load_state_dict({"offset": 5.0})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target_active": 1.0}, "target_active"),
        ({"gain": 0.0}, "gain"),
        ({"min_offset": 1.0, "max_offset": 1.0}, "min_offset"),
        ({"initial_offset": 2.0}, "initial_offset"),
    ],
)
def test_invalid_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AdaptiveHardnessController(**kwargs)


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_invalid_share(share: float) -> None:
    with pytest.raises(ValueError, match="active_share"):
        AdaptiveHardnessController().update(share)
