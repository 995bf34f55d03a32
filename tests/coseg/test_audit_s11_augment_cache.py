"""coseg.data.cache shared by several processes: one --cache-dir filled at the same time by each of them."""
from __future__ import annotations

import multiprocessing
import sys

import numpy as np
import pytest

from coseg.atomic import TEMPORARY_MARK
from coseg.data import ImageCache, Sample, decode_sample, find_samples, make_synthetic_coseg


def _same(a, b) -> bool:
    return (np.array_equal(a.image, b.image) and a.size == b.size
            and (a.mask is None) == (b.mask is None) and (a.mask is None or np.array_equal(a.mask, b.mask)))


def _fill(samples, cache_dir, start, results) -> None:
    start.wait()
    cache = ImageCache(24, cache_dir=cache_dir, progress=False, threads=2)
    kept = cache.load(samples)
    results.put((len(kept), cache.skipped, all(_same(cache[s], decode_sample(s, 24)) for s in samples)))


@pytest.mark.skipif(sys.platform != "linux", reason="forks the test process")
def test_processes_filling_one_cache_folder_at_once_leave_it_whole(tmp_path):
    scan = find_samples(make_synthetic_coseg(tmp_path / "data", num_groups=2, images_per_group=4, size=40))
    samples = scan.samples + [Sample(s.image, None, s.group) for s in scan.samples]
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(3), context.Queue()
    workers = [context.Process(target=_fill, args=(samples, tmp_path / "cache", start, results)) for _ in range(3)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert outcomes == [(len(samples), [], True)] * 3
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == len(samples) and not [f for f in files if TEMPORARY_MARK in f.name]
    again = ImageCache(24, cache_dir=tmp_path / "cache", progress=False)
    assert again.load(samples) == samples and again.decoded == 0 and again.from_disk == len(samples)
    assert all(_same(again[s], decode_sample(s, 24)) for s in samples)
