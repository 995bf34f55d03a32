"""Bad inputs, tried as a new user would, through every command: ``coseg train | evaluate | predict`` and
``coseg retrieval train | evaluate | export``.

One messy data set per app holds every case (``tests/reliability/messy.py``); each command runs once on it and
each case is then checked in what the command printed and wrote. Unit tests of the readers themselves (every
encoding, every rejected mask) are in ``tests/coseg/test_io.py``; layouts (unpaired files, symlink loops, empty
folders) in ``tests/coseg/test_layouts.py``."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from apps.cli import main
from coseg.data import make_synthetic_coseg, printable, read_image, read_image_for_size, resize_image
from coseg.inference import foreground_at_size
from tests.apps.retrieval_files import tiny_image
from tests.apps.retrieval_runs import BACKBONE, tiny_set
from tests.coseg.files import write_exif_jpeg
from tests.reliability.messy import messy_coseg_set, write_bad_images, write_odd_images

ROOT = Path(__file__).resolve().parents[2]
TINY_COSEG = ["--members", 1, "--weights", "none", "--image-size", 64, "--groups-per-batch", 2, "--images-per-group", 2,
              "--triplet-pixels", 8, "--device", "cpu", "--quiet"]
TINY_RETRIEVAL = ["--backbone", BACKBONE, "--weights", "none", "--image-size", 32, "--embedding-dim", 8,
                  "--classes-per-batch", 2, "--samples-per-class", 2, "--val-fraction", 0.34, "--batch-size", 16,
                  "--device", "cpu", "--quiet"]


def without_share(args: list) -> list:
    """``args`` without their ``--val-fraction`` and its value: for runs that name their validation groups or
    classes, which a share set beside them would contradict (refused)."""
    at = args.index("--val-fraction")
    return args[:at] + args[at + 2:]


def invoke(*args) -> str:
    """Run ``coseg ARGS``; the command must succeed. Returns what it printed."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def fails(*args) -> str:
    """Run ``coseg ARGS``; the command must fail with a one-line error, no traceback. Returns the output."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    return result.output


def listed(output: str, heading: str) -> list[str]:
    """The indented lines under the line starting with ``skipped N <heading>``; checks that N is their count."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("skipped ") and line.endswith(f"{heading}:"):
            items = []
            for item in lines[i + 1:]:
                if not item.startswith("  "):
                    break
                items.append(item.strip())
            assert int(line.split()[1]) == len(items), line
            return items
    return []


def naming(lines: list[str], path: Path) -> str:
    """The one line of ``lines`` that names ``path`` (printable)."""
    hits = [line for line in lines if printable(path) in line]
    assert len(hits) == 1, (printable(path), lines)
    return hits[0]


# --- co-segmentation: train, evaluate, predict on one messy set --------------------------------------------------


@pytest.fixture(scope="module")
def coseg_runs(tmp_path_factory) -> dict:
    top = tmp_path_factory.mktemp("coseg_messy")
    data = top / "data"
    cases = messy_coseg_set(data)
    run = top / "run"
    outputs = {
        "train": invoke("train", "--data", data, "--output", run, "--epochs", 1, "--val-groups", "00-star",
                        *TINY_COSEG),
    }
    checkpoint = run / "best.safetensors"
    outputs["evaluate"] = invoke("evaluate", "--checkpoint", checkpoint, "--data", data, "--output", top / "eval",
                                 "--device", "cpu", "--quiet")
    outputs["predict"] = invoke("predict", "--checkpoint", checkpoint, "--input", data / "images", "--output",
                                top / "masks", "--device", "cpu", "--quiet")
    return {"data": data, "run": run, "eval": top / "eval", "masks": top / "masks", "cases": cases,
            "outputs": outputs}


UNREADABLE = ["zero_bytes.jpg", "truncated_jpeg.jpg", "truncated_png.png", "text_named.jpg", "non_utf8"]
ODD = ["gray.png", "rgba.png", "deep16.png", "cmyk.jpg", "exif_rotated.jpg", "one_pixel.png", "non_utf8", "long"]


def _case(names, key: str) -> str:
    """The file name of case ``key`` (``non_utf8`` and ``long`` stand for the names they describe)."""
    if key == "non_utf8":
        return next(n for n in names if "\udcff" in n)
    if key == "long":
        return next(n for n in names if n.startswith("long_"))
    return key


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
@pytest.mark.parametrize("key", UNREADABLE)
def test_coseg_unreadable_image_is_skipped_counted_and_named(coseg_runs, command, key):
    name = _case(coseg_runs["cases"]["unreadable"], key)
    path = coseg_runs["data"] / "images" / "odd" / name
    heading = "file(s) or folder(s)" if command == "predict" else "file(s) that could not be used"  # predict: clashes
    line = naming(listed(coseg_runs["outputs"][command], heading), path)
    assert coseg_runs["cases"]["unreadable"][name] in line
    assert not (coseg_runs["masks"] / "odd" / f"{Path(name).stem}.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("key", ODD)
def test_coseg_odd_but_readable_image_is_used_everywhere(coseg_runs, key):
    sizes = coseg_runs["cases"]["readable"]
    name = _case(sizes, key)
    path = coseg_runs["data"] / "images" / "odd" / name
    for command in ("train", "evaluate", "predict"):
        assert printable(path) not in coseg_runs["outputs"][command], command
    rows = list(csv.DictReader(open(coseg_runs["eval"] / "per_image.csv", encoding="utf-8")))
    assert printable(name) in {r["image"] for r in rows if r["group"] == "odd"}
    mask = cv2.imdecode(np.fromfile(coseg_runs["masks"] / "odd" / f"{Path(name).stem}.png", np.uint8),
                        cv2.IMREAD_UNCHANGED)
    assert mask.shape == sizes[name] == read_image(path).shape[:2]  # the viewed (EXIF-rotated) size
    assert set(np.unique(mask).tolist()) <= {0, 255}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wrong_size_mask.png", "grey_levels_mask.png"])
def test_coseg_bad_mask_is_skipped_in_training_and_evaluation(coseg_runs, name):
    mask = coseg_runs["data"] / "masks" / "odd" / name
    words = coseg_runs["cases"]["bad_masks"][name]
    for command in ("train", "evaluate"):
        listing = listed(coseg_runs["outputs"][command], "file(s) that could not be used")
        assert re.search(words, naming(listing, mask)), command
    rows = list(csv.DictReader(open(coseg_runs["eval"] / "per_image.csv", encoding="utf-8")))
    assert Path(name).with_suffix(".jpg").name not in {r["image"] for r in rows}
    # predict needs no mask: the image is segmented at its own size, never at its mask's
    written = cv2.imread(str(coseg_runs["masks"] / "odd" / name), cv2.IMREAD_UNCHANGED)
    assert written.shape == read_image(coseg_runs["data"] / "images" / "odd" / Path(name).with_suffix(".jpg")).shape[:2]


@pytest.mark.slow
def test_coseg_unpaired_files_are_reported_by_train_and_evaluate(coseg_runs):
    images, masks = coseg_runs["data"] / "images" / "odd", coseg_runs["data"] / "masks" / "odd"
    for command in ("train", "evaluate"):
        lines = listed(coseg_runs["outputs"][command], "unpaired file(s) or folder(s)")
        assert naming(lines, images / "no_mask.jpg").startswith("image without mask")
        assert naming(lines, masks / "no_image.png").startswith("mask without image")
    assert (coseg_runs["masks"] / "odd" / "no_mask.png").is_file()  # predict needs no mask


@pytest.mark.slow
def test_coseg_nested_linked_and_one_image_groups_are_groups(coseg_runs):
    summary = json.loads((coseg_runs["eval"] / "summary.json").read_text())
    counts = {g: d["images"] for g, d in summary["per_group"].items()}
    assert counts["nested/inner"] == 2 and counts["linked"] == 2 and counts["solo"] == 1
    assert "empty" not in counts
    log = list(csv.DictReader(open(coseg_runs["run"] / "log.csv")))
    assert len(log) == 1 and float(log[0]["train_loss"]) > 0  # the epoch ran to its end on the rest
    for relative in ("nested/inner/n0.png", "linked/l1.png", "solo/n0.png"):
        assert (coseg_runs["masks"] / relative).is_file()
    assert len(list(coseg_runs["masks"].rglob("*.png"))) == 12 + 8 + 3 + 2 + 2 + 1  # every readable image
    assert not list(coseg_runs["masks"].rglob(".*"))  # no temporary file left


# --- retrieval: train, evaluate, export on one messy class-folder set ---------------------------------------------


@pytest.fixture(scope="module")
def retrieval_runs(tmp_path_factory) -> dict:
    top = tmp_path_factory.mktemp("retrieval_messy")
    data = tiny_set(top / "data")
    unreadable = write_bad_images(data / "class1")
    readable = write_odd_images(data / "class2")
    tiny_image(data / "solo" / "only.jpg", seed=5)
    for k in range(3):
        tiny_image(top / "elsewhere" / f"e{k}.jpg", seed=50 + k)
        tiny_image(data / "nested" / "inner" / f"n{k}.jpg", seed=60 + k)
    (data / "linked").symlink_to(top / "elsewhere", target_is_directory=True)
    (data / "empty").mkdir()
    splits = json.loads((data / "splits.json").read_text())
    splits["train"] += ["solo", "linked", "nested/inner"]
    (data / "splits.json").write_text(json.dumps(splits))
    run = top / "run"
    outputs = {"train": invoke("retrieval", "train", "--data", data, "--output", run, "--epochs", 1,
                               *TINY_RETRIEVAL)}
    checkpoint = run / "best.safetensors"
    outputs["evaluate"] = invoke("retrieval", "evaluate", "--checkpoint", checkpoint, "--data", data, "--output",
                                 top / "eval", "--split", "train", "--device", "cpu", "--quiet")
    outputs["export"] = invoke("retrieval", "export", "--checkpoint", checkpoint, "--input", data, "--output",
                               top / "export", "--device", "cpu", "--quiet")
    return {"data": data, "export": top / "export", "eval": top / "eval", "outputs": outputs,
            "unreadable": unreadable, "readable": readable}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "evaluate", "export"])
@pytest.mark.parametrize("key", UNREADABLE)
def test_retrieval_unreadable_image_is_skipped_counted_and_named(retrieval_runs, command, key):
    name = _case(retrieval_runs["unreadable"], key)
    output = retrieval_runs["outputs"][command]
    if command == "export":  # relative paths on screen, reasons in skipped.csv
        line = naming(listed(output, "file(s) or folder(s) (listed in skipped.csv)"), Path("class1") / name)
        assert retrieval_runs["unreadable"][name] in line
        reasons = dict(csv.reader(open(retrieval_runs["export"] / "skipped.csv", encoding="utf-8")))
        assert retrieval_runs["unreadable"][name] in reasons[printable(f"class1/{name}")]
    else:
        line = naming(listed(output, "unreadable file(s)"), retrieval_runs["data"] / "class1" / name)
        assert retrieval_runs["unreadable"][name] in line


@pytest.mark.slow
def test_retrieval_odd_images_and_folders_are_used(retrieval_runs):
    manifest = {row["path"]: row["label"] for row in
                csv.DictReader(open(retrieval_runs["export"] / "manifest.csv", encoding="utf-8"))}
    for name in retrieval_runs["readable"]:
        assert manifest[printable(f"class2/{name}")] == "class2"
    assert manifest["solo/only.jpg"] == "solo" and manifest["linked/e0.jpg"] == "linked"
    assert manifest["nested/inner/n2.jpg"] == "nested/inner"
    assert len(manifest) == 32 + len(retrieval_runs["readable"]) + 1 + 3 + 3
    assert np.load(retrieval_runs["export"] / "embeddings.npy").shape == (len(manifest), 8)
    summary = json.loads((retrieval_runs["eval"] / "summary.json").read_text())
    assert summary["images"] == 24 + len(retrieval_runs["readable"]) + 1 + 3 + 3  # classes 0-5 + added ones
    assert len(summary["skipped"]) == len(retrieval_runs["unreadable"])


# --- empty folders -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_empty_folder_is_a_clear_error_for_every_command(tmp_path, coseg_runs, retrieval_runs):
    empty = tmp_path / "nothing here"
    (empty / "sub").mkdir(parents=True)
    coseg_model = coseg_runs["run"] / "best.safetensors"
    retrieval_model = retrieval_runs["export"] / "model.safetensors"
    commands = {
        "train": ["train", "--data", empty, "--output", tmp_path / "r", *TINY_COSEG],
        "evaluate": ["evaluate", "--checkpoint", coseg_model, "--data", empty, "--output", tmp_path / "e"],
        "predict": ["predict", "--checkpoint", coseg_model, "--input", empty, "--output", tmp_path / "p"],
        "retrieval train": ["retrieval", "train", "--data", empty, "--output", tmp_path / "rr", *TINY_RETRIEVAL],
        "retrieval evaluate": ["retrieval", "evaluate", "--checkpoint", retrieval_model, "--data", empty,
                               "--output", tmp_path / "re"],
        "retrieval export": ["retrieval", "export", "--checkpoint", retrieval_model, "--input", empty, "--output",
                             tmp_path / "x"],
    }
    for command, args in commands.items():
        output = fails(*args)
        assert "nothing here" in output and ("no images" in output or "no image" in output), (command, output)
    assert not any((tmp_path / name).exists() for name in ("r", "e", "p", "rr", "re", "x"))


# --- groups sharing images, one SBCoseg group folder -------------------------------------------------------------


@pytest.mark.slow
def test_groups_sharing_images_and_one_sbcoseg_group_folder(tmp_path, coseg_runs):
    internet = make_synthetic_coseg(tmp_path / "Internet", num_groups=3, images_per_group=2, size=32,
                                    layout="internet", group_names=["Airplane", "Car", "Horse"])
    shutil.copytree(internet / "Data" / "Airplane", internet / "Data" / "Airplane100")  # a subset copied out
    output = fails("train", "--data", internet, "--output", tmp_path / "r", "--val-groups", "Airplane100",
                   *TINY_COSEG)
    assert "validation groups share images with training groups: 'Airplane100' with 'Airplane'" in output
    assert not (tmp_path / "r").exists()

    group = make_synthetic_coseg(tmp_path / "SBCoseg", num_groups=1, images_per_group=3, size=32,
                                 layout="sbcoseg") / "ECFB" / "00-star"
    invoke("evaluate", "--checkpoint", coseg_runs["run"] / "best.safetensors", "--data", group, "--output",
           tmp_path / "e", "--device", "cpu", "--quiet")
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert list(summary["per_group"]) == ["ECFB/00-star"] and summary["images"] == 3, summary
    invoke("predict", "--checkpoint", coseg_runs["run"] / "best.safetensors", "--input", group, "--output",
           tmp_path / "p", "--device", "cpu", "--quiet")
    assert sorted(p.name for p in (tmp_path / "p").rglob("*.png")) == ["img000.png", "img001.png", "img002.png"]


# --- a huge image ------------------------------------------------------------------------------------------------

HUGE_PROBE = """
import resource, sys
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from coseg.data import read_image_for_size
from coseg.predict import predict_folder
from tests.coseg.pipeline_fixtures import ConstantModel

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

folder, out = Path(sys.argv[1]), Path(sys.argv[2])
base = peak_mb()
image, size = read_image_for_size(folder / "huge.jpg", 64)
decode = peak_mb() - base
report = predict_folder(ConstantModel(0.8), 64, folder, out, torch.device("cpu"), progress=False)
print(image.shape[0], image.shape[1], size[0], size[1], report.written, round(decode), round(peak_mb() - base))
"""


@pytest.mark.slow
def test_huge_image_is_decoded_reduced_and_predicted_within_a_few_hundred_mb(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    half = np.zeros((10_000, 10_000), np.uint8)  # grey: 100 MB here, 300 MB as RGB
    half[:, :5_000] = 200
    ok, data = cv2.imencode(".jpg", half)
    del half
    (folder / "huge.jpg").write_bytes(data.tobytes())
    proc = subprocess.run([sys.executable, "-c", HUGE_PROBE, str(folder), str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    h, w, full_h, full_w, written, decode_mb, predict_mb = map(int, proc.stdout.split())
    assert (h, w) == (1250, 1250) and (full_h, full_w) == (10_000, 10_000) and written == 1  # decoded at 1/8
    assert decode_mb < 60, decode_mb  # a full decode peaks near 600 MB
    assert predict_mb < 450, predict_mb  # the mask is 100 MB; no 400 MB float image of the probability
    mask = cv2.imread(str(tmp_path / "out" / "huge.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (10_000, 10_000) and mask.min() == 255


def test_reduced_decode_matches_a_full_decode(tmp_path):
    """Reduced JPEG decoding changes memory, not results: same full size (EXIF-rotated) and nearly the same pixels
    after resizing, and small images or PNGs are decoded in full."""
    rng = np.random.default_rng(0)
    smooth = cv2.resize(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8), (1000, 600), interpolation=cv2.INTER_CUBIC)
    path = write_exif_jpeg(tmp_path / "big.jpg", smooth, 6)  # stored 600 × 1000, viewed 1000 × 600
    image, size = read_image_for_size(path, 64)
    full = read_image(path)
    assert size == full.shape[:2] == (1000, 600) and image.shape[:2] == (125, 75)  # 1/8: shorter side 75 ≥ 64
    assert np.abs(resize_image(image, 64).astype(int) - resize_image(full, 64).astype(int)).mean() < 2.0
    image, size = read_image_for_size(path, 400)  # 1/8 would leave 75 < 400 px: decoded in full
    assert image.shape[:2] == size == (1000, 600)
    cv2.imwrite(str(tmp_path / "big.png"), smooth)
    image, size = read_image_for_size(tmp_path / "big.png", 64)
    assert image.shape[:2] == size == (600, 1000)


@pytest.mark.parametrize("source, size", [((64, 64), (1000, 700)), ((64, 64), (1, 1)), ((7, 5), (1030, 3)),
                                          ((64, 48), (33, 91)), ((224, 224), (375, 500))])
@pytest.mark.parametrize("direct_pixels", [0, 1 << 22])  # in bands / in one call
def test_mask_at_original_size_equals_interpolate_then_threshold(source, size, direct_pixels):
    prob = torch.rand(*source, generator=torch.Generator().manual_seed(0))
    naive = F.interpolate(prob[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    got = foreground_at_size(prob, size, direct_pixels=direct_pixels)
    assert got.shape == size and got.dtype == np.bool_
    differ = got != (naive >= 0.5).numpy()
    # only pixels within OpenCV's weight rounding of the threshold may differ
    assert not differ.any() or float((naive[torch.from_numpy(differ)] - 0.5).abs().max()) < 1e-4
