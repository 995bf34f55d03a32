"""Adaptive hardness controller of smart mining (Harwood et al., ICCV 2017): keep the share of active triplets
near a set point by moving the offset the miner adds to the positive distance."""
from __future__ import annotations

import math

import torch


class AdaptiveHardnessController:
    """Feedback on the mining offset δ (embedding distance units) from the observed share of active triplets.

    The smart miner takes, per anchor, the nearest negative with ``d(a, n) > d(a, p) + δ``: a larger δ gives
    easier (farther) negatives, so fewer triplets with a non-zero loss; δ < 0 admits negatives closer than the
    positive (harder). After each training step, :meth:`update` with the share ``s`` of the step's triplets whose
    loss is > 0 applies the control law

        δ ← clip(δ + gain · (s − target_active), min_offset, max_offset)

    i.e. the offset integrates the error (each step moves it proportionally to the error), so with a share that
    decreases as δ grows it settles where ``s = target_active`` without a steady-state error. The update is
    additive, not on log δ, because δ is signed: the set point may need negatives harder than the positive.
    ``gain`` is in distance units per unit of share (e.g. 0.05 for L2-normalised embeddings, distances in [0, 2]).
    """

    def __init__(
        self,
        target_active: float = 0.5,
        gain: float = 0.05,
        min_offset: float = -1.0,
        max_offset: float = 1.0,
        initial_offset: float = 0.0,
    ) -> None:
        if not 0.0 < target_active < 1.0:
            raise ValueError(f"target_active must be in (0, 1), got {target_active}")
        if not 0.0 < gain < math.inf:  # an infinite gain turns a share on the set point into a NaN step
            raise ValueError(f"gain must be a finite number > 0, got {gain}")
        if not min_offset < max_offset:
            raise ValueError(f"min_offset must be < max_offset, got {min_offset} and {max_offset}")
        if not min_offset <= initial_offset <= max_offset:
            raise ValueError(f"initial_offset must be in [{min_offset}, {max_offset}], got {initial_offset}")
        self.target_active = target_active
        self.gain = gain
        self.min_offset = min_offset
        self.max_offset = max_offset
        self.offset = initial_offset

    def update(self, active_share: float) -> float:
        """Apply the control law with the last step's share of active triplets (in [0, 1]); return the new δ."""
        if not (math.isfinite(active_share) and 0.0 <= active_share <= 1.0):
            raise ValueError(f"active_share must be in [0, 1], got {active_share}")
        step = self.gain * (active_share - self.target_active)
        self.offset = min(self.max_offset, max(self.min_offset, self.offset + step))
        return self.offset

    def update_from_losses(self, losses: torch.Tensor) -> float:
        """:meth:`update` with the share of per-triplet ``losses`` that are > 0; no triplets leave δ unchanged."""
        if losses.numel() == 0:
            return self.offset
        return self.update(float((losses.detach() > 0).float().mean()))

    def state_dict(self) -> dict[str, float]:
        return {"offset": self.offset}

    def load_state_dict(self, state: dict[str, float]) -> None:
        offset = float(state["offset"])
        if not self.min_offset <= offset <= self.max_offset:
            raise ValueError(f"offset {offset} is outside [{self.min_offset}, {self.max_offset}]")
        self.offset = offset
