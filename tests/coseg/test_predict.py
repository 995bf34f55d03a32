from pathlib import Path

import cv2
import pytest
import torch

from coseg.data import read_image
from coseg.predict import output_path, predict_folder
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set

CPU = torch.device("cpu")


@pytest.fixture(params=[False, True], ids=["inline", "helper-threads"])
def helpers(request, monkeypatch):
    """Both ways predict runs: decoding and writing inline (the model fills every core) or in helper threads."""
    import coseg.inference
    import coseg.predict

    for module in (coseg.inference, coseg.predict):
        monkeypatch.setattr(module, "spare_cpu", lambda device: request.param)
    return request.param


def test_helper_threads_only_with_a_core_to_spare(monkeypatch):
    import os

    from coseg.inference import spare_cpu

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    monkeypatch.setattr(torch, "get_num_threads", lambda: cores)
    assert not spare_cpu(CPU)
    assert spare_cpu(torch.device("cuda"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: cores - 1)
    assert spare_cpu(CPU) == (cores > 1)


def test_masks_at_input_size_with_same_relative_paths(tmp_path, helpers):
    root = odd_sized_set(tmp_path / "data") / "images"
    report = predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, overlays=tmp_path / "ov", progress=False)
    assert report.written == 3 and not report.skipped
    for image in root.rglob("*.jpg"):
        mask = cv2.imread(str(tmp_path / "out" / image.relative_to(root).with_suffix(".png")), cv2.IMREAD_UNCHANGED)
        assert mask.shape == read_image(image).shape[:2]
        assert set(mask.ravel().tolist()) == {255}
        assert (tmp_path / "ov" / image.relative_to(root).with_suffix(".png")).is_file()


def test_rerun_keeps_finished_masks_and_skips_unreadable(tmp_path, helpers):
    root = odd_sized_set(tmp_path / "data") / "images"
    (root / "g1" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    first = predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, progress=False)
    assert first.written == 3 and len(first.skipped) == 1 and "broken.jpg" in first.skipped[0][1]
    assert not (tmp_path / "out" / "g1" / "broken.png").exists()
    (tmp_path / "out" / "g0" / "im1.png").unlink()  # as if the first run had been killed before this one
    second = predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, progress=False)
    assert second.written == 1 and second.already_done == 2
    assert not list((tmp_path / "out").rglob(".*tmp*"))


def test_never_writes_into_the_input_folder(tmp_path):
    root = odd_sized_set(tmp_path / "data") / "images"
    with pytest.raises(ValueError, match="inside the input folder"):
        predict_folder(ConstantModel(0.8), 64, root, root / "masks", CPU, progress=False)
    with pytest.raises(ValueError, match="inside the input folder"):
        predict_folder(ConstantModel(0.8), 64, root, tmp_path / "o", CPU, overlays=root, progress=False)


def test_output_paths_cannot_escape(tmp_path):
    assert output_path(tmp_path, Path("g/a.jpg")) == tmp_path / "g" / "a.png"
    with pytest.raises(ValueError, match="leave the output folder"):
        output_path(tmp_path, Path("../evil.jpg"))
    with pytest.raises(ValueError, match="leave the output folder"):
        output_path(tmp_path, Path("/etc/x.jpg"))


def test_prefetched_keeps_order_raises_producer_errors_and_stops_early():
    import threading

    from coseg.inference import prefetched

    assert list(prefetched(range(50), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(prefetched(failing()))
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    for i in prefetched(endless(), depth=2):
        if i == 5:
            break
    assert threading.active_count() == before  # the producer thread has ended
    assert len(produced) <= 5 + 1 + 2 + 1  # it never ran far ahead


def test_a_failed_mask_write_is_raised(tmp_path, monkeypatch, helpers):
    import coseg.predict as predict

    root = odd_sized_set(tmp_path / "data") / "images"

    def broken(*args):
        raise OSError("no space left on device")

    monkeypatch.setattr(predict, "write_bytes_atomic", broken)
    with pytest.raises(OSError, match="no space left"):
        predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, progress=False)
