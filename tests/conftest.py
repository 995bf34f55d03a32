"""Shared fixtures: devices (CUDA cases skip cleanly without a GPU), dtypes, seeding, shared data paths, no network."""
from __future__ import annotations

import random
import socket
import tempfile
from pathlib import Path

import huggingface_hub.constants as hf_constants
import numpy as np
import pytest
import torch

# One intra-op thread: tests measure no speed, and OpenMP spinning makes 2 threads far slower than 1 whenever
# other processes share the cores (xdist, DDP tests, a busy CI machine).
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

DEVICES = ["cpu",
           pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _scratch_in_basetemp(tmp_path_factory):
    """Scratch folders of the tests and of their child processes (torchrun's logs, Chromium's profile) go under
    pytest's base folder, removed with it, instead of staying in the system's temporary directory."""
    scratch = tmp_path_factory.mktemp("scratch")
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(scratch))
    patch.setattr(tempfile, "tempdir", str(scratch))
    yield
    patch.undo()


@pytest.fixture
def shared_data() -> Path:
    """Root of ../shared/data; tests using it skip when the real data is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Any connection attempt fails at once; the Hub is offline with an empty cache."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch_hub"))
