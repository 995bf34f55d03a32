"""`coseg predict` on one bad image goes on with the rest: a folder where a mask or overlay goes, a file where a group's
folder goes, an image that cannot be read again for its overlay are skipped and listed (these used to stop the whole
run with the error); a data set given one folder too high says "did you mean ...?", as train and evaluate do."""
from __future__ import annotations

import errno
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import coseg.predict
from coseg.data import make_synthetic_coseg
from coseg.predict import predict_folder
from tests.coseg.pipeline_fixtures import ConstantModel

CPU = torch.device("cpu")


@pytest.fixture(params=[False, True], ids=["inline", "helper-threads"])
def helpers(request, monkeypatch):
    """Both ways predict writes: encoding inline (the model fills every core) or in helper threads."""
    import coseg.inference

    for module in (coseg.inference, coseg.predict):
        monkeypatch.setattr(module, "spare_cpu", lambda device: request.param)


def photos(root: Path, groups: tuple[str, ...] = ("g", "h"), count: int = 3) -> Path:
    for group in groups:
        (root / group).mkdir(parents=True)
        for i in range(count):
            assert cv2.imwrite(str(root / group / f"a{i}.jpg"), np.full((20, 24, 3), 40 * i, np.uint8))
    return root


def written(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png") if p.is_file())


@pytest.mark.parametrize("where", ["out", "overlays"])
def test_a_folder_where_an_output_goes_skips_that_image_only(tmp_path, where, helpers):
    root = photos(tmp_path / "in")
    (tmp_path / where / "g" / "a1.png" / "mine").mkdir(parents=True)  # a user's folder, named like the output
    report = predict_folder(ConstantModel(0.8), 32, root, tmp_path / "out", CPU, overlays=tmp_path / "overlays",
                            progress=False)
    what = "mask" if where == "out" else "overlay"
    assert report.skipped == [(str(root / "g" / "a1.jpg"), f"{root / 'g' / 'a1.jpg'}: its {what} cannot be written: "
                               f"{tmp_path / where / 'g' / 'a1.png'} is a folder; move or rename that folder")]
    others = ["g/a0.png", "g/a2.png", "h/a0.png", "h/a1.png", "h/a2.png"]
    assert report.written == 5 and written(tmp_path / "out") == others and written(tmp_path / "overlays") == others
    assert (tmp_path / where / "g" / "a1.png" / "mine").is_dir()
    rerun = predict_folder(ConstantModel(0.8), 32, root, tmp_path / "out", CPU, overlays=tmp_path / "overlays",
                           progress=False)
    assert rerun.already_done == 5 and rerun.written == 0 and len(rerun.skipped) == 1  # not taken for done


def test_a_file_where_a_group_folder_goes_skips_that_group_only(tmp_path, helpers):
    root = photos(tmp_path / "in")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "g").write_text("notes")
    report = predict_folder(ConstantModel(0.8), 32, root, tmp_path / "out", CPU, progress=False)
    assert [image for image, _ in report.skipped] == [str(root / "g" / f"a{i}.jpg") for i in range(3)]
    assert all("its output could not be written ([Errno 17] File exists" in reason for _, reason in report.skipped)
    assert report.written == 3 and written(tmp_path / "out") == ["h/a0.png", "h/a1.png", "h/a2.png"]
    assert (tmp_path / "out" / "g").read_text() == "notes"


@pytest.mark.parametrize("group_mode", [True, False])
@pytest.mark.parametrize("replacement", ["text", "another size"])
def test_an_image_replaced_before_its_overlay_is_made_is_skipped(tmp_path, monkeypatch, helpers, group_mode,
                                                                  replacement):
    root = photos(tmp_path / "in")
    victim = root / "g" / "a1.jpg"
    predicting = coseg.predict.predict_dataset

    def replaced_meanwhile(*args, **kwargs):
        # after the model has read every image, before any overlay is made (whole, as a writer thread may read it)
        for n, item in enumerate(predicting(*args, **kwargs)):
            if n == 0:
                new = tmp_path / "new.jpg"
                if replacement == "text":
                    new.write_bytes(b"not an image any more")
                else:
                    assert cv2.imwrite(str(new), np.zeros((30, 10, 3), np.uint8))
                new.replace(victim)
            yield item

    monkeypatch.setattr(coseg.predict, "predict_dataset", replaced_meanwhile)
    report = predict_folder(ConstantModel(0.8), 32, root, tmp_path / "out", CPU, overlays=tmp_path / "overlays",
                            progress=False, group_mode=group_mode)
    assert [image for image, _ in report.skipped] == [str(victim)]
    assert report.skipped[0][1].startswith(f"{victim}: ")
    if replacement == "another size":
        assert report.skipped[0][1] == (f"{victim}: changed during the run: 30x10 (HxW) now, 20x24 when it was "
                                        "predicted; predict it again")
    others = ["g/a0.png", "g/a2.png", "h/a0.png", "h/a1.png", "h/a2.png"]
    assert report.written == 5 and written(tmp_path / "out") == others and written(tmp_path / "overlays") == others


def test_a_full_disk_still_stops_the_run(tmp_path, monkeypatch, helpers):
    root = photos(tmp_path / "in")

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "g" / "a0.png"))

    monkeypatch.setattr(coseg.predict, "write_bytes_atomic", full)
    with pytest.raises(OSError, match="No space left"):
        predict_folder(ConstantModel(0.8), 32, root, tmp_path / "out", CPU, progress=False)


@pytest.mark.parametrize("layout, name", [("sbcoseg", "SBCoseg"), ("icoseg", "iCoseg")])
def test_a_data_set_one_folder_too_high_says_did_you_mean(tmp_path, layout, name):
    # was: read in the folders layout without a word, the masks predicted as photos (or clashing with their JPEGs)
    make_synthetic_coseg(tmp_path / "X" / name, num_groups=2, images_per_group=2, size=32, layout=layout)
    report = predict_folder(ConstantModel(0.8), 32, tmp_path / "X", tmp_path / "out", CPU, progress=False)
    assert report.skipped[0] == (str(tmp_path / "X" / name), (
        f"data set in a subfolder: {tmp_path / 'X' / name} ({tmp_path / 'X'}, which holds no image itself, was read "
        f"in the folders layout, each folder a group: did you mean {tmp_path / 'X' / name}? (it holds a data set in "
        f"the {layout} layout))"))


def test_no_hint_for_a_folder_of_groups_or_a_data_set_given_itself(tmp_path):
    make_synthetic_coseg(tmp_path / "SBCoseg", num_groups=2, images_per_group=2, size=32, layout="sbcoseg")
    for root, images in ((photos(tmp_path / "photos"), 6), (tmp_path / "SBCoseg", 4)):
        report = predict_folder(ConstantModel(0.8), 32, root, tmp_path / "out" / root.name, CPU, progress=False)
        assert not report.skipped and report.written == images


def test_the_command_lists_the_hint_first(tmp_path):
    from click.testing import CliRunner

    from apps.cli import main
    from coseg.models import create_model

    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8).save(model, metadata={"image_size": "32"})
    make_synthetic_coseg(tmp_path / "X" / "SBCoseg", num_groups=1, images_per_group=2, size=32, layout="sbcoseg")
    r = CliRunner().invoke(main, ["predict", "--checkpoint", str(model), "--device", "cpu", "--quiet",
                                  "--input", str(tmp_path / "X"), "--output", str(tmp_path / "out")])
    assert r.exit_code == 1, r.output  # each JPEG and its PNG mask, read as photos, would write one mask
    lines = r.output.splitlines()
    assert lines[0] == "skipped 5 file(s) or folder(s):"
    assert lines[1].startswith("  data set in a subfolder: ") and lines[1].endswith(
        f"did you mean {tmp_path / 'X' / 'SBCoseg'}? (it holds a data set in the sbcoseg layout))")
