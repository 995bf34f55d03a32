"""`coseg predict` removes the temporary files its killed runs left anywhere in its own folders: those of masks and
overlays of images removed from the input since, or of groups renamed since, at any depth. Was: only the temporaries
of the files the run was about to write, so the others stayed as hidden files for ever. Another tool's temporaries
under the output folder stay: an evaluation's, a training run's, another predict's, those beside a user's file, in a
hidden (staging) folder or in the input folder."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import torch

from coseg.atomic import TEMPORARY_MARK, atomic_path, is_temporary
from coseg.predict import predict_folder
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set


def leftover(path: Path) -> Path:
    """A temporary file of ``path`` as a run killed while writing it leaves (:func:`atomic_path`'s name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = f".{path.name}{TEMPORARY_MARK}k1ll3d_x{path.suffix}"
    assert is_temporary(name, ".png") == (path.suffix == ".png")
    (path.parent / name).write_bytes(b"partial")
    return path.parent / name


def run(data: Path, out: Path, checkpoint: Path, overlays: Path | None = None) -> int:
    report = predict_folder(ConstantModel(0.9), 16, data / "images", out, torch.device("cpu"), progress=False,
                            checkpoint=checkpoint, overlays=overlays)
    return report.written


def test_leftovers_of_images_and_groups_gone_since_are_removed(tmp_path):
    data = odd_sized_set(tmp_path / "data")
    out, overlays, checkpoint = tmp_path / "out", tmp_path / "overlays", tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"stands for a model")
    assert run(data, out, checkpoint, overlays) == 3
    ours = [leftover(out / "g0" / "removed.png"),  # an image removed from the group since
            leftover(out / "renamed" / "im0.png"),  # a group renamed since (its masks are still there)
            leftover(out / "old" / "nested" / "a.png"),  # a nested group removed since
            leftover(out / "g1" / ("é" * 60 + ".png")),  # a long name, cut in the temporary's name
            leftover(out / "flat.png"),  # a flat folder's mask
            leftover(overlays / "gone" / "a.png")]
    shutil.copy(out / "g0" / "im0.png", out / "renamed" / "im0.png")
    (out / "old" / ".DS_Store").write_bytes(b"a file browser's")
    assert run(data, out, checkpoint, overlays) == 0  # nothing to predict again: the leftovers go all the same
    assert [path.name for path in ours if path.exists()] == []
    assert (out / "renamed" / "im0.png").is_file() and (out / "old" / ".DS_Store").is_file()


def test_other_tools_temporaries_under_the_output_stay(tmp_path):
    data = odd_sized_set(tmp_path / "data")
    out, checkpoint = tmp_path / "out", tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"stands for a model")
    (out / "eval").mkdir(parents=True)
    (out / "eval" / ".evaluate.lock").write_text("pid 1 on host h\n")  # an evaluation writing its masks there
    (out / "run").mkdir()
    (out / "run" / "log.csv").write_text("epoch\n")
    (out / "other").mkdir()
    (out / "other" / "predict.json").write_text("{}")  # another predict's output folder
    (out / "mine" / "g").mkdir(parents=True)
    (out / "mine" / "g" / "notes.txt").write_text("the user's")
    shutil.copytree(data / "images", out / "in" / "images")
    (out / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    theirs = [leftover(out / "eval" / "predictions" / "g0" / "im0.png"),
              leftover(out / "run" / "samples" / "a.png"),
              leftover(out / "other" / "g" / "a.png"),
              leftover(out / "mine" / "g" / "a.png"),
              leftover(out / "mine" / "g" / "sub" / "a.png"),
              leftover(out / ".predictions.tmp-abc" / "g0" / "im0.png"),  # an evaluation's staging folder
              leftover(out / "g0" / "notes.txt"),  # a file predict does not write
              leftover(out / "in" / "images" / "g" / "a.png"),  # in the input folder
              leftover(tmp_path / "elsewhere" / "a.png")]  # through a link
    report = predict_folder(ConstantModel(0.9), 16, out / "in" / "images", out, torch.device("cpu"),
                            progress=False, checkpoint=checkpoint)
    assert report.written == 3
    assert [path.relative_to(tmp_path).as_posix() for path in theirs if not path.exists()] == []


def test_a_temporary_name_tells_the_kind_of_file(tmp_path):
    for name in ("a.png", "b.PNG.png", "é" * 100 + ".png", "summary.json", "x.png.json"):
        with atomic_path(tmp_path / name) as temporary:
            assert is_temporary(temporary.name, ".png") == name.endswith(".png"), name
    for name in (".a.png.tmp-killed", "a.png.tmp-abcdefgh.png", ".a.txt.tmp-abcdefgh.png", ".a.png.tmp-ABCDEFGH.png"):
        assert not is_temporary(name, ".png"), name


def test_a_leftover_that_cannot_be_removed_stops_nothing(tmp_path, monkeypatch):
    data = odd_sized_set(tmp_path / "data")
    out, checkpoint = tmp_path / "out", tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"stands for a model")
    stuck, gone = leftover(out / "old" / "a.png"), leftover(out / "old" / "b.png")
    real = os.unlink

    def unlink(path, *args, **kwargs):  # as in a folder nobody may write in (root may write in any)
        if Path(path) == stuck:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    assert run(data, out, checkpoint) == 3
    assert stuck.exists() and not gone.exists()
