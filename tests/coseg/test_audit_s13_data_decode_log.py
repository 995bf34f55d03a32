"""A damaged BMP, GIF or TIFF is skipped and named by the cache, without OpenCV's log lines (naming no file, twice
per file) on the terminal; OpenCV's log level is the caller's again afterwards, also in a process forked while
another thread decodes."""
from __future__ import annotations

import io
import os
import signal
import threading
import time

import cv2
import numpy as np
import pytest
from PIL import Image

import coseg.data.io as io_module
from coseg.data import ImageCache, Sample, read_image
from tests.coseg.files import left_red_image


def test_damaged_files_are_named_without_opencvs_log_lines(tmp_path, capfd):
    samples = []
    for fmt, suffix in (("BMP", ".bmp"), ("GIF", ".gif"), ("TIFF", ".tif")):
        buffer = io.BytesIO()
        Image.fromarray(left_red_image(24, 20)).save(buffer, fmt)
        path = tmp_path / f"cut{suffix}"
        path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
        samples.append(Sample(path, None, "g"))
    good = tmp_path / "good.png"
    Image.fromarray(left_red_image(24, 20)).save(good)
    level = cv2.utils.logging.getLogLevel()
    capfd.readouterr()
    cache = ImageCache(8, progress=False, threads=2)
    assert cache.load([*samples, Sample(good, None, "g")]) == [Sample(good, None, "g")]
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert [path.name for path, _ in cache.skipped] == ["cut.bmp", "cut.gif", "cut.tif"]
    assert cv2.utils.logging.getLogLevel() == level
    np.testing.assert_array_equal(read_image(good), left_red_image(24, 20))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_process_forked_while_a_thread_is_between_decodes_still_decodes(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(left_red_image(24, 20)).save(good)
    level = cv2.utils.logging.getLogLevel()
    inside, leave = threading.Event(), threading.Event()

    def decoding() -> None:
        with io_module._QUIET_OPENCV, io_module._QUIET_OPENCV._lock:  # caught at its most awkward moment
            inside.set()
            leave.wait()

    thread = threading.Thread(target=decoding)
    thread.start()
    inside.wait()
    pid = os.fork()
    if pid == 0:  # the child: decodes, and OpenCV logs at the level the parent had before
        ok = False
        try:
            ok = read_image(good).shape == (24, 20, 3) and cv2.utils.logging.getLogLevel() == level
        finally:
            os._exit(0 if ok else 1)
    leave.set()
    thread.join()
    for _ in range(200):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked process hung decoding")
    assert os.waitstatus_to_exitcode(status) == 0
    assert cv2.utils.logging.getLogLevel() == level
