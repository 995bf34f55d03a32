"""``predict_folder`` and ``evaluate_samples`` on the folders a user really has: every kind of image file, broken
and hidden files, links, odd names, and folders named like files."""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from coseg.data import find_samples, read_image
from coseg.evaluate import evaluate_samples, prediction_files
from coseg.predict import predict_folder
from tests.coseg.pipeline_fixtures import ConstantModel
from tests.coseg.test_userfolders_layouts import lock

CPU = torch.device("cpu")


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def jpeg(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", rgb)[1].tobytes()


def messy_folder(root: Path) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """A folder of groups as a user has it: {relative path of each readable image: (H, W) as viewed} and
    {name of each unreadable file: words its reason must hold}."""
    a, b = root / "group A", root / "B"
    for folder in (a, b, root / "single", root / "empty", a / "x.jpg"):
        folder.mkdir(parents=True)
    Image.fromarray(texture(40, 60)).convert("CMYK").save(a / "cmyk.jpg")
    Image.fromarray(np.dstack([texture(50, 30), np.zeros((50, 30), np.uint8)])).save(a / "transparent.png")
    Image.fromarray(texture(45, 35)).convert("P").save(a / "palette.png")
    Image.fromarray(texture(33, 47)[..., 0] > 128).save(a / "one bit.png")
    cv2.imwrite(str(a / "grey16.png"), np.random.default_rng(1).integers(0, 65535, (31, 29), dtype=np.uint16))
    cv2.imwrite(str(a / "tiny.png"), texture(3, 3))
    (a / "UPPER.JPG").write_bytes(jpeg(texture(20, 30)))
    (a / "ünï 猫\nline.jpg").write_bytes(jpeg(texture(22, 32)))
    turned = Image.fromarray(texture(40, 70))
    exif = turned.getexif()
    exif[0x0112] = 6  # viewed turned a quarter: 70 × 40
    turned.save(a / "exif.jpg", exif=exif)
    data = jpeg(texture(60, 80))
    (a / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (a / "zero.jpg").write_bytes(b"")
    (a / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (a / "._cmyk.jpg").write_bytes(b"\0\5\26\7 AppleDouble")
    (b / "UPPER.JPG").write_bytes(jpeg(texture(26, 36)))  # the name of a file of group A
    (b / "cmyk.jpg").write_bytes(jpeg(texture(27, 37)))
    os.symlink(a / "UPPER.JPG", b / "linked.jpg")
    os.symlink(b, root / "B link")
    os.symlink(root, b / "loop")
    os.symlink("/nonexistent/x.jpg", b / "dangling.jpg")
    (root / "single" / "only.jpg").write_bytes(jpeg(texture(25, 35)))
    (root / "locked").mkdir()
    (root / "locked" / "hidden.jpg").write_bytes(jpeg(texture(25, 35)))
    readable = {"group A/cmyk.jpg": (40, 60), "group A/transparent.png": (50, 30), "group A/palette.png": (45, 35),
                "group A/one bit.png": (33, 47), "group A/grey16.png": (31, 29), "group A/tiny.png": (3, 3),
                "group A/UPPER.JPG": (20, 30), "group A/ünï 猫\nline.jpg": (22, 32), "group A/exif.jpg": (70, 40),
                "B/UPPER.JPG": (26, 36), "B/cmyk.jpg": (27, 37), "B/linked.jpg": (20, 30), "single/only.jpg": (25, 35)}
    unreadable = {"truncated.jpg": "truncated JPEG", "zero.jpg": "empty file", "dangling.jpg": "broken link",
                  "loop": "already visited", "B link": "already visited", "locked": "Permission denied"}
    return readable, unreadable


def test_a_messy_folder_gets_one_mask_per_readable_image_and_the_rest_named(tmp_path, monkeypatch):
    root = tmp_path / "photos"
    readable, unreadable = messy_folder(root)
    lock(monkeypatch, root / "locked")
    out = tmp_path / "masks"
    report = predict_folder(ConstantModel(0.8), 64, root, out, CPU, batch_size=4, progress=False)
    assert report.written == len(readable) and report.already_done == 0
    assert len(report.skipped) == len(unreadable)
    for name, words in unreadable.items():
        assert any(name in file and words in reason for file, reason in report.skipped), name
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png") if p.is_file())
    assert written == sorted(Path(r).with_suffix(".png").as_posix() for r in readable)
    for relative, size in readable.items():
        mask = cv2.imdecode(np.fromfile(out / Path(relative).with_suffix(".png"), np.uint8), cv2.IMREAD_UNCHANGED)
        assert mask.shape == size == read_image(root / relative).shape[:2], relative
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_an_image_beside_a_folder_named_like_its_mask_is_skipped_not_fatal(tmp_path):
    """``g/x.jpg`` has its mask at ``g/x.png``, where the folder of images ``g/x.png/`` has its masks: the run used
    to stop with FileExistsError / IsADirectoryError halfway. Now x.jpg is named and skipped, the rest written."""
    root = tmp_path / "photos"
    (root / "g" / "X.PNG").mkdir(parents=True)
    for relative in ("g/x.jpg", "g/y.jpg", "g/X.PNG/a.jpg", "g/X.PNG/b.jpg"):
        (root / relative).write_bytes(jpeg(texture(20, 30)))
    out = tmp_path / "masks"
    report = predict_folder(ConstantModel(0.8), 64, root, out, CPU, overlays=tmp_path / "overlays", progress=False)
    assert report.written == 3
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png") if p.is_file()) == [
        "g/X.PNG/a.png", "g/X.PNG/b.png", "g/y.png"]
    assert len(report.skipped) == 1 and report.skipped[0][0] == str(root / "g" / "x.jpg")
    assert "g/x.png" in report.skipped[0][1] and str(root / "g" / "X.PNG") in report.skipped[0][1]
    assert (tmp_path / "overlays" / "g" / "X.PNG" / "a.png").is_file()


def test_images_of_one_name_in_two_folders_of_one_name_are_told_apart(tmp_path):
    """``Cats/c.jpg`` and ``cats/c.jpg`` (one mask on a case-blind disk): the reason names both paths, not
    ``c.jpg, c.jpg``."""
    root = tmp_path / "photos"
    for relative in ("Cats/c.jpg", "cats/c.jpg", "cats/d.jpg"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(jpeg(texture(20, 30)))
    report = predict_folder(ConstantModel(0.8), 64, root, tmp_path / "masks", CPU, progress=False)
    assert report.written == 1 and len(report.skipped) == 2
    assert all("Cats/c.jpg, cats/c.jpg" in reason and "cats/c.png" in reason.casefold() for _, reason in report.skipped)


@pytest.mark.parametrize("overlays", [False, True])
def test_an_output_folder_holding_the_input_never_gets_masks_inside_the_input(tmp_path, overlays):
    """``--input work/in --output work`` with a group folder ``work/in/in/``: its mask ``work/in/a.png`` would be
    written into the input, over the input image of that name (with ``--overwrite``). Refused, nothing written."""
    work = tmp_path / "work"
    (work / "in" / "in").mkdir(parents=True)
    cv2.imwrite(str(work / "in" / "in" / "a.png"), texture(20, 30))
    cv2.imwrite(str(work / "in" / "a.png"), texture(30, 40, seed=1))
    before = (work / "in" / "a.png").read_bytes()
    output, tints = (tmp_path / "masks", work) if overlays else (work, None)
    with pytest.raises(ValueError, match="inside the input folder"):
        predict_folder(ConstantModel(0.8), 64, work / "in", output, CPU, overlays=tints, overwrite=True,
                       progress=False)
    assert (work / "in" / "a.png").read_bytes() == before
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*")) == ["in", "in/a.png", "in/in",
                                                                               "in/in/a.png"]


def test_evaluate_saves_the_mask_of_an_image_beside_a_group_named_like_it(tmp_path):
    """Group ``g`` holds ``x.jpg`` and group ``g/x.png`` holds ``a.jpg``: the prediction of x.jpg is saved as
    ``g/x.jpg.png``, not at ``g/x.png``, where the masks of that group go (the evaluation used to stop there)."""
    root = tmp_path / "data"
    for folder in ("images/g/x.png", "masks/g/x.png"):
        (root / folder).mkdir(parents=True)
    for image, mask in (("g/x.jpg", "g/x.bmp"), ("g/x.png/a.jpg", "g/x.png/a.png")):
        (root / "images" / image).write_bytes(jpeg(texture(20, 30)))
        cv2.imwrite(str(root / "masks" / mask), np.full((20, 30), 255, np.uint8))
    samples = find_samples(root, "folders").samples
    predictions = tmp_path / "eval" / "predictions"
    assert [p.relative_to(predictions).as_posix() for p in prediction_files(predictions, samples)] == [
        "g/x.jpg.png", "g/x.png/a.png"]
    evaluation = evaluate_samples(ConstantModel(0.8), samples, 64, CPU, progress=False, predictions=predictions)
    assert evaluation.summary["images"] == 2 and not evaluation.skipped
    assert sorted(p.relative_to(predictions).as_posix() for p in predictions.rglob("*.png") if p.is_file()) == [
        "g/x.jpg.png", "g/x.png/a.png"]


def test_a_folder_whose_every_image_is_skipped_fails_the_command(tmp_path):
    """`coseg predict` on a folder of unreadable images lists them and exits 1 (it exited 0 with "wrote 0 mask(s)",
    which a script takes for done); a rerun that keeps every mask already written is not a failure."""
    from click.testing import CliRunner

    from apps.cli import main
    from coseg.models import create_model

    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8).save(model, metadata={"image_size": "32"})
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"")
    (broken / "b.png").write_bytes(b"not a png")
    args = ["predict", "--checkpoint", str(model), "--device", "cpu", "--quiet", "--no-colour-cut"]
    r = CliRunner().invoke(main, [*args, "--input", str(broken), "--output", str(tmp_path / "out")])
    assert r.exit_code == 1, r.output
    assert "skipped 2 file(s) or folder(s):" in r.output and "a.jpg" in r.output and "b.png" in r.output
    assert f"Error: no mask written: none of the images under {broken} could be predicted" in r.output
    good = tmp_path / "good"
    good.mkdir()
    cv2.imwrite(str(good / "c.png"), texture(32, 32))
    for kept in (False, True):
        r = CliRunner().invoke(main, [*args, "--input", str(good), "--output", str(tmp_path / "out2")])
        assert r.exit_code == 0 and ("kept 1 already done" in r.output) == kept, r.output
