"""coseg.engine.resolve_device: a device the trainers cannot run on is one clear error, before any work."""
from __future__ import annotations

import pytest
import torch

from coseg.engine import resolve_device


@pytest.mark.parametrize("name", ["mps", "xpu", "meta"])
def test_a_device_neither_cpu_nor_cuda_is_refused(name):
    with pytest.raises(ValueError, match=f"device '{name}' is not supported; valid: auto, cpu, cuda or cuda:N"):
        resolve_device(name)


def test_a_cuda_device_this_machine_lacks_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"'cuda:2' was asked for but this machine has 2 CUDA device\(s\): cuda:0 to "
                                         r"cuda:1"):
        resolve_device("cuda:2")


def test_the_process_group_waits_through_a_long_validation(monkeypatch):
    """Under torchrun the other processes wait at a barrier while the main one validates: the group's timeout must
    outlast torch's default (30 minutes for gloo, 10 for NCCL)."""
    from datetime import timedelta

    import torch.distributed as dist

    from coseg.engine.distributed import setup_distributed

    joined = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kwargs: joined.update(kwargs))
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    info = setup_distributed("cpu")
    assert (info.rank, info.world_size) == (1, 2)
    assert joined["backend"] == "gloo" and joined["timeout"] >= timedelta(hours=2)
