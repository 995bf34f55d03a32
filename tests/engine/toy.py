"""A tiny model + task for engine tests: a linear classifier on fixed random data."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from coseg.atomic import atomic_path
from metric._checks import check_finite


class ToyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def save(self, path: Path, metadata: Optional[dict[str, str]] = None) -> None:
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp), metadata=metadata)

    def load(self, path: Path) -> None:
        self.load_state_dict(load_file(str(path)))


class ToyTask:
    def __init__(self, nan_at_step: Optional[int] = None, crash_at_step: Optional[int] = None,
                 nan_input_at_step: Optional[int] = None) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(64, 8, generator=g)
        self.y = (self.x[:, 0] > 0).long() + (self.x[:, 1] > 1).long()
        self.nan_at_step = nan_at_step
        self.crash_at_step = crash_at_step
        self.nan_input_at_step = nan_input_at_step  # the loss's input check meets NaN (a diverged model)
        self.steps = 0

    def loader(self, workers: int = 0) -> DataLoader:
        """Shuffled batches of 16; with ``workers``, persistent worker processes and, as in the trainers, an order
        seeded by epoch (the engine calls ``set_epoch``)."""
        data = TensorDataset(self.x, self.y)
        if not workers:
            return DataLoader(data, batch_size=16, shuffle=True)
        return DataLoader(data, batch_size=16, sampler=DistributedSampler(data, num_replicas=1, rank=0, seed=0),
                          num_workers=workers, persistent_workers=True)

    def train_step(self, model, batch, device):
        self.steps += 1
        if self.crash_at_step is not None and self.steps >= self.crash_at_step:
            raise KeyboardInterrupt("simulated kill")
        x, y = (t.to(device) for t in batch)
        logits = model(x)
        if self.nan_input_at_step is not None and self.steps >= self.nan_input_at_step:
            check_finite(logits * float("nan"), "logits")
        loss = nn.functional.cross_entropy(logits, y)
        if self.nan_at_step is not None and self.steps >= self.nan_at_step:
            loss = loss * float("nan")
        return {"loss": loss, "ce": loss.detach()}

    def batch_size(self, batch) -> int:
        return int(batch[0].shape[0])

    def validate(self, model) -> dict[str, float]:
        with torch.no_grad():
            acc = (model(self.x).argmax(1) == self.y).float().mean().item()
        return {"acc": acc}
