"""Process-group set-up for runs started with ``torchrun`` (DDP); a single process needs none of it."""
from __future__ import annotations

import gc
import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from coseg.data.io import printable


PROCESS_GROUP_TIMEOUT = timedelta(hours=3)
"""How long a process waits in a collective: the others wait at a barrier while the main process validates (a
large validation set on a CPU takes more than torch's 10 to 30 minutes); a process that dies ends the run at once
under torchrun, so only a true hang waits this long."""

OTHER_RANK_ERROR_DELAY_S = 10.0
"""How long a process other than rank 0 keeps its error to itself (:func:`hold_error`): torchrun ends every other
process once one exits (it looks every 0.1 s, every 5 s before torch 2.4), so an error rank 0 also meets within this
time is told by rank 0 alone. Rank 0 may meet a shared error seconds after the others: it alone takes the run
folder's lock and writes the run's files."""

_error_held_since: Optional[float] = None
"""When this process began holding its error (:func:`hold_error`): the wait does not start again when the error
is held once more on its way out."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process runs: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' → CUDA when available, else CPU; otherwise the named device. A name that is not a CPU or CUDA device
    (mps, xpu, meta: the commands support neither), or a CUDA device this machine does not have, raises
    ``ValueError``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device '{device}'; valid: auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device '{device}' is not supported; valid: auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' was asked for but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device '{device}' was asked for but this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s): cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return dev


def _launch_number(name: str, default: int) -> int:
    """The environment variable ``name`` torchrun sets for each process it starts (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``) as an integer >= 0, ``default`` when unset; a ``ValueError`` naming it when it is no such
    number."""
    text = os.environ.get(name)
    if text is None:
        return default
    if not text.strip().isdecimal():
        raise ValueError(f"the environment variable {name}={printable(text[:40])!r} is not a whole number >= 0; "
                         "torchrun sets it for each process it starts: unset it to run in one process")
    return int(text)


def world_size(info: Optional[DistInfo] = None) -> int:
    """The number of processes of the run: ``info``'s, else torchrun's ``WORLD_SIZE`` (1 without torchrun), known
    before the process group is joined."""
    return info.world_size if info is not None else max(1, _launch_number("WORLD_SIZE", 1))


def launched_rank() -> int:
    """This process's rank as torchrun set it (``RANK``), 0 in a single process; known before the process group is
    joined, and after it is left. Never raises (errors are told after it): 0 when the variables are no numbers."""
    try:
        return _launch_number("RANK", 0) if world_size() > 1 else 0
    except ValueError:  # told by world_size() or setup_distributed()
        return 0


def hold_error(delay_s: float = OTHER_RANK_ERROR_DELAY_S) -> None:
    """In a process of a torchrun run other than rank 0, wait until ``delay_s`` seconds after it first held an
    error: an error every process meets alike (a bad option, data set or run folder) is meanwhile told by rank 0,
    whose exit makes torchrun end this process. Rank 0 and a single process go on at once."""
    global _error_held_since
    if launched_rank() == 0:
        return
    now = time.monotonic()
    if _error_held_since is None:
        _error_held_since = now
    time.sleep(max(0.0, _error_held_since + delay_s - now))


def error_prefix() -> str:
    """What goes before the error this process tells: nothing in rank 0 or a single process; in another process of a
    torchrun run, ``process R:`` once :func:`hold_error` has let rank 0 tell an error they share, so that an error
    only this process meets is still told, naming it."""
    rank = launched_rank()
    if rank == 0:
        return ""
    hold_error()
    return f"process {rank}: "


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU.

    Each process uses GPU ``LOCAL_RANK`` when on CUDA."""
    size = world_size()
    dev = resolve_device(device)
    if size <= 1:
        return DistInfo(device=dev)
    if "RANK" not in os.environ:
        raise ValueError(f"the environment variable WORLD_SIZE={size} asks for {size} processes, but RANK (this "
                         "process's) is not set: start the command with torchrun, which sets both for each process, "
                         "or unset WORLD_SIZE to run in one process")
    rank = _launch_number("RANK", 0)
    local_rank = _launch_number("LOCAL_RANK", 0)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
    return DistInfo(rank=rank, world_size=size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    """Destroy the process group, after collecting garbage: a DDP wrapper caught in a reference cycle (lazy imports
    inside a training step make them) would otherwise keep gloo's worker threads alive until interpreter shutdown,
    where their last release of Python-owned tensors aborts the process."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


@contextmanager
def distributed_run(device: str = "auto", info: Optional[DistInfo] = None) -> Iterator[DistInfo]:
    """``info`` as given, or the process group joined for the block and destroyed after it; an error leaving the
    block is held first (:func:`hold_error`).

    Keep the models and DDP wrappers inside a function called in the block, so that they are garbage when it ends."""
    if info is not None:
        yield info
        return
    info = setup_distributed(device)
    try:
        yield info
    except Exception:
        hold_error()  # still in the group: leaving it would fail rank 0's next collective before rank 0 can tell
        raise
    finally:
        cleanup_distributed()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_max(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Elementwise maximum over ranks (used so all ranks agree on stopping)."""
    if info.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def row_counts(rows: int, info: DistInfo) -> tuple[int, ...]:
    """Every rank's ``rows``, in rank order (``(rows,)`` in a single process). Every rank must call it."""
    if not info.distributed:
        return (rows,)
    counts = torch.zeros(info.world_size, dtype=torch.int64, device=info.device)
    counts[info.rank] = rows
    dist.all_reduce(counts)
    return tuple(counts.tolist())


class _AllGatherRows(torch.autograd.Function):
    """Every rank's rows concatenated in rank order; backward gives each rank the sum over ranks of the gradients
    of its own rows."""

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor, counts: tuple[int, ...], rank: int) -> torch.Tensor:
        ctx.counts, ctx.rank = counts, rank
        padded = local.new_zeros((max(counts), *local.shape[1:]))  # all_gather needs equal shapes
        padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, counts)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.counts[: ctx.rank])
        return grad[start : start + ctx.counts[ctx.rank]], None, None


def all_gather_rows(local: torch.Tensor, info: DistInfo, counts: Optional[tuple[int, ...]] = None) -> torch.Tensor:
    """Every rank's ``local`` (n_r, ...) concatenated in rank order: (Σ n_r, ...); ``local`` itself in a single
    process. ``counts``: the n_r when known (:func:`row_counts`), else gathered first. Every rank must call it.

    Differentiable: when every rank computes the same loss of the result and DDP averages the parameters' gradients,
    they equal those of one process computing that loss on the concatenated batch — a rank's rows get the sum of
    every rank's gradient for them (W times the loss's), and DDP's average divides by W again. Parameters used on
    the result alone (a loss's own) get the whole batch's gradient on every rank, which DDP's average keeps."""
    if not info.distributed:
        return local
    counts = row_counts(len(local), info) if counts is None else counts
    return _AllGatherRows.apply(local, counts, info.rank)


def gather_to_main(value: Any, info: DistInfo) -> Optional[list[Any]]:
    """Every rank's ``value`` (any picklable object), in rank order, on rank 0; None on the other ranks. A single
    process gets ``[value]``. Every rank must call it."""
    if not info.distributed:
        return [value]
    gathered: Optional[list[Any]] = [None] * info.world_size if info.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def check_same_files(skipped: Sequence[tuple[Path, str]], info: DistInfo) -> None:
    """Refuse, on every process, data the processes did not read alike: ``skipped`` holds the (file, reason) this
    process could not use; a file that one process skipped and another read (each machine's copy of the data set,
    or a file changed while they read it) would leave them data sets of different sizes, whose batches no longer
    pair up (the run would wait for the missing ones until the process group times out). Every rank must call it."""
    if not info.distributed:
        return
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, {str(path): reason for path, reason in skipped})
    for path in sorted(set().union(*gathered)):
        unread = [rank for rank, files in enumerate(gathered) if path in files]
        read = [rank for rank, files in enumerate(gathered) if path not in files]
        if read:
            raise ValueError(f"{printable(path)}: process {unread[0]} could not use it ({gathered[unread[0]][path]}) "
                             f"but process {read[0]} could: every process must read the same data (is a copy of the "
                             "data set on another machine different, or did the file change?)")


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers of ``module`` (BatchNorm statistics, hooks' state) to every rank: each rank's forward
    passes update its own, so they differ after an epoch until DDP's next forward broadcasts them."""
    if info.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def split_random_streams(info: DistInfo) -> None:
    """Reseed the random streams (Python, NumPy, torch and CUDA) of every rank but 0 from the current torch stream
    and the rank, so that ranks that shared one seed draw different augmentations, dropout masks and loader-worker
    seeds. Rank 0, and a single process, are left as they are."""
    if info.rank == 0:
        return
    entropy = int(torch.randint(2**62, (), dtype=torch.int64))
    seed = int(np.random.SeedSequence([entropy, info.rank]).generate_state(1, np.uint64)[0])
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
