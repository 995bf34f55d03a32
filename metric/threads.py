"""Helper threads that do their share of the work on one core each: a thread's torch (and MKL) calls otherwise
start their own team of threads, one per core, beside the caller's — on a machine with few cores those teams then
wait for each other's descheduled threads."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator

import torch


def use_one_torch_thread() -> None:
    """Make the calling (helper) thread run torch's intra-op work and MKL on itself only.

    torch records the count for threads that start later too: the caller should restore its own count afterwards
    (:func:`keeping_callers_count`)."""
    torch.get_num_threads()  # torch's per-thread set-up first: it would later reset the count from the global one
    torch.set_num_threads(1)


@contextmanager
def keeping_callers_count() -> Iterator[None]:
    """Around starting helper threads that call :func:`use_one_torch_thread`: once they have, give the calling
    thread's count back to torch's record, so threads started later get it, not 1 (also when the body raises)."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def single_threaded_pool(workers: int) -> ThreadPoolExecutor:
    """A pool of ``workers`` started threads, each running torch on one thread (:func:`use_one_torch_thread`); the
    calling thread keeps its count, and so do threads started later."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    started = threading.Barrier(workers + 1)

    def start() -> None:
        use_one_torch_thread()
        started.wait()

    with keeping_callers_count():
        pool = ThreadPoolExecutor(workers, initializer=start)
        for _ in range(workers):
            pool.submit(int)
        started.wait()
    return pool


def start_single_threaded(target: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread running ``target`` with torch on one thread (:func:`use_one_torch_thread`); the
    calling thread keeps its count, and so do threads started later."""
    ready = threading.Event()

    def run() -> None:
        use_one_torch_thread()
        ready.set()
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    with keeping_callers_count():
        thread.start()
        ready.wait()
    return thread
