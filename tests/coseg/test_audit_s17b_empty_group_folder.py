"""A group named on the command line (or in a splits file) whose folder is there but holds no image says so, naming
the folder, and a folder whose images were all left out (an unsupported format, images of one stem where masks are
read) names how many and the first. Was: "'empty' not found", as of a typo, with the folder in plain sight."""
from __future__ import annotations

import json
import re

import pytest

from coseg.data import find_samples, make_synthetic_coseg
from coseg.models import create_model
from coseg.selection import choose_groups
from tests.coseg.files import half_mask, left_red_image, write_cv2, write_rgb
from tests.coseg.pipeline_fixtures import synthetic_set
from tests.coseg.test_train_run import TINY, coseg

RESOLVE = "cannot resolve 1 group name(s) among 2 groups: "


def test_evaluate_and_train_name_an_empty_group_folder(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=2, images=2)
    (data / "images" / "empty").mkdir()
    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8, group_levels=0).save(model, {"image_size": "32"})
    holds_none = f"'empty' not found: the folder {data / 'images' / 'empty'} holds no image"
    code, output = coseg("evaluate", "--checkpoint", model, "--data", data, "--output", tmp_path / "eval",
                         "--groups", "empty", "--device", "cpu", "--quiet")
    assert code == 1 and f"Error: {RESOLVE}{holds_none}\n" in output, output
    at = TINY.index("--val-fraction")
    for option, tiny in (("--train-groups", TINY), ("--val-groups", TINY[:at] + TINY[at + 2:])):
        code, output = coseg("train", "--data", data, "--output", tmp_path / "run", *tiny, option, "empty")
        assert code == 1 and f"Error: {option}: {RESOLVE}{holds_none}\n" in output, output
    assert not (tmp_path / "eval").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("layout", ["folders", "icoseg", "internet", "sbcoseg"])
def test_each_layout_names_the_folder_where_its_groups_are(tmp_path, layout):
    root = make_synthetic_coseg(tmp_path / layout, num_groups=2, images_per_group=2, size=32, layout=layout)
    groups = {"folders": root / "images", "icoseg": root / "images", "internet": root / "Data", "sbcoseg": root / "TR"}
    (groups[layout] / "empty").mkdir()
    scan = find_samples(root)
    name = "TR/empty" if layout == "sbcoseg" else "empty"
    with pytest.raises(ValueError) as refused:
        choose_groups(scan, None, None, [name])
    assert str(refused.value) == f"{RESOLVE}'{name}' not found: the folder {groups[layout] / 'empty'} holds no image"
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"test": [name]}))
    with pytest.raises(ValueError) as refused:
        choose_groups(scan, splits, "test", [])
    assert str(refused.value) == (f"split 'test' of {splits}: {RESOLVE}'{name}' not found: the folder "
                                  f"{groups[layout] / 'empty'} holds no image")


def test_a_folder_whose_images_were_all_left_out_names_the_first(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=2, images=2)
    (data / "images" / "phone").mkdir()
    (data / "images" / "phone" / "IMG_1.HEIC").write_bytes(b"a HEIC photo")
    write_rgb(data / "images" / "twice" / "a.jpg", left_red_image())  # which one is the mask a.png of?
    write_rgb(data / "images" / "twice" / "a.png", left_red_image())
    write_cv2(data / "ground_truth" / "twice" / "a.png", half_mask())
    scan = find_samples(data)
    with pytest.raises(ValueError) as refused:
        choose_groups(scan, None, None, ["phone", "twice"])
    assert str(refused.value) == (
        "cannot resolve 2 group name(s) among 2 groups: 'phone' not found: the folder "
        f"{data / 'images' / 'phone'} holds no image read: 1 file(s) or folder(s) left out there, the first: "
        f"unsupported file: {data / 'images' / 'phone' / 'IMG_1.HEIC'} ('.heic' files are not read here; use .bmp, "
        ".gif, .jfif, .jp2, .jpe, .jpeg, .jpg, .png, .tif, .tiff, .webp); 'twice' not found: the folder "
        f"{data / 'images' / 'twice'} holds no image read: 2 file(s) or folder(s) left out there, the first: "
        f"ambiguous image: {data / 'images' / 'twice' / 'a.jpg'} (2 images share the stem 'a')")


def test_a_name_of_no_folder_is_still_not_found(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=2, images=2)
    (tmp_path / "empty").mkdir()  # beside the data set: no folder of its groups
    scan = find_samples(data)
    for name in ("empty", "../empty", ".", str(tmp_path / "empty")):
        with pytest.raises(ValueError, match=f"^{re.escape(RESOLVE)}'[^']*' not found( \\(closest: [^)]*\\))?$"):
            choose_groups(scan, None, None, [name])
