"""Report thumbnails are written to a temporary file renamed over the target (never half-written) without an fsync
each: a report of 1000 groups would otherwise spend most of its time waiting for the disk."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from coseg.report.build import build_report
from coseg.report.thumbnails import write_thumbnail
from tests.report.report_runs import evaluation_folder, parse_page


def test_a_report_fsyncs_its_page_and_plots_not_each_thumbnail(tmp_path, monkeypatch):
    folder = evaluation_folder(tmp_path)
    synced = []
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or fsync(fd))
    result = build_report(folder, per_group=3, thumbnail=24, progress=False)
    names = [p.name for p in result.files.iterdir()]
    plots = [n for n in names if n.endswith(("_loss.png", "_val.png"))]
    assert len(plots) == 2 and len(names) == 2 + 9 * 3  # the run's curves; image | ground truth | prediction
    assert len(synced) == 1 + len(plots)  # the page and the plots
    assert all((folder / src).is_file() for src in parse_page(result.path).images)
    assert not [n for n in os.listdir(result.files) if n.startswith(".")]  # no temporary left


def test_a_thumbnail_written_is_whole_and_readable(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    mask = np.zeros((30, 40), dtype=bool)
    write_thumbnail(tmp_path / "t.png", image, 20, mask)
    written = cv2.imread(str(tmp_path / "t.png"), cv2.IMREAD_COLOR)
    assert written.shape == (15, 20, 3) and os.listdir(tmp_path) == ["t.png"]


def test_a_thumbnail_write_that_fails_leaves_the_earlier_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "t.png"
    target.write_bytes(b"earlier")
    write_bytes = Path.write_bytes

    def disk_full(path, data):
        write_bytes(path, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_thumbnail(target, np.zeros((8, 8, 3), dtype=np.uint8), 4)
    assert target.read_bytes() == b"earlier" and os.listdir(tmp_path) == ["t.png"]
