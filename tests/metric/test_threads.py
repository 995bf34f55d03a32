"""Helper threads run torch on one thread each, and leave the caller's (and later threads') count alone."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from metric.threads import keeping_callers_count, single_threaded_pool, start_single_threaded, use_one_torch_thread


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_pool_workers_run_torch_on_one_thread_and_leave_the_callers_count(two_threads, workers: int) -> None:
    with single_threaded_pool(workers) as pool:
        seen = [pool.submit(lambda: (threading.get_ident(), torch.get_num_threads())) for _ in range(8 * workers)]
        seen = [f.result() for f in seen]
    assert {count for _, count in seen} == {1}
    assert len({ident for ident, _ in seen}) <= workers
    assert torch.get_num_threads() == 2
    with ThreadPoolExecutor(1) as later:  # a thread started afterwards gets the caller's count, not the workers'
        assert later.submit(torch.get_num_threads).result() == 2


def test_one_torch_thread_holds_after_the_first_parallel_op(two_threads) -> None:
    def helper() -> int:
        use_one_torch_thread()
        torch.randn(256, 256).T.contiguous().sum()  # parallel ops would re-run torch's per-thread set-up
        return torch.get_num_threads()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(helper).result() == 1
    assert torch.get_num_threads() == 2


def test_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="workers"):
        single_threaded_pool(0)


def test_started_thread_runs_on_one_torch_thread(two_threads) -> None:
    seen = []
    thread = start_single_threaded(lambda: seen.append(torch.get_num_threads()), name="helper")
    thread.join()
    assert seen == [1] and thread.name == "helper" and thread.daemon
    assert torch.get_num_threads() == 2
    with ThreadPoolExecutor(1) as later:
        assert later.submit(torch.get_num_threads).result() == 2


def test_the_callers_count_comes_back_when_the_body_raises(two_threads):
    with pytest.raises(RuntimeError, match="body failed"):
        with keeping_callers_count():
            torch.set_num_threads(1)
            raise RuntimeError("body failed")
    assert torch.get_num_threads() == 2
