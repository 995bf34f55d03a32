from pathlib import Path

import cv2
import numpy as np
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
    report = predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, overlays=tmp_path / "ov",
                            progress=False)
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


@pytest.mark.parametrize("option", ["refinement", "statistics"])
def test_group_options_in_single_image_mode_are_refused_not_ignored(tmp_path, option):
    from coseg.models import GroupRefinement, GroupStatistics

    root = odd_sized_set(tmp_path / "data") / "images"
    setting = {"refinement": GroupRefinement(1), "statistics": GroupStatistics(8)}[option]
    with pytest.raises(ValueError, match="need group mode"):
        predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, progress=False, group_mode=False,
                       **{option: setting})
    assert not list((tmp_path / "out").rglob("*.png"))


def test_never_writes_into_the_input_folder(tmp_path):
    root = odd_sized_set(tmp_path / "data") / "images"
    with pytest.raises(ValueError, match="the output folder .* is inside the input folder"):
        predict_folder(ConstantModel(0.8), 64, root, root / "masks", CPU, progress=False)
    # which folder: the overlays' was refused as if it were the output's ("choose an output folder elsewhere")
    with pytest.raises(ValueError, match="the overlays folder .* is inside the input folder .*: choose an overlays "
                                         "folder elsewhere"):
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


class RedModel(torch.nn.Module):
    """Foreground probability = the image's red channel: its masks depend on which image it was given."""

    def predict(self, images: torch.Tensor, flip: bool = False, edges=None) -> torch.Tensor:
        return images[:, :1].clone()

    def predict_group(self, images: torch.Tensor, chunk_size: int = 16, refinement=None, flip: bool = False,
                      edges=None, statistics=None) -> torch.Tensor:
        return self.predict(images)


@pytest.mark.parametrize("group_mode", [True, False], ids=["groups", "alone"])
@pytest.mark.parametrize("original_size", [True, False], ids=["original-size", "model-size"])
def test_predictions_do_not_depend_on_how_images_are_read(tmp_path, monkeypatch, group_mode, original_size):
    """Items read one at a time, by several threads at once, or by a DataLoader worker: the same results for the
    same indices, and the unreadable file reported."""
    import coseg.inference as inference
    from coseg.data import find_samples
    from coseg.inference import ImageFileDataset, group_ids, predict_dataset

    root = odd_sized_set(tmp_path / "data") / "images"
    (root / "g1" / "broken.jpg").write_bytes(b"not an image")
    samples = find_samples(root, "folders").samples
    dataset = ImageFileDataset([s.image for s in samples], 64)
    groups = group_ids(samples) if group_mode else None

    def run(cores: int, workers: int = 0) -> dict:
        monkeypatch.setattr(inference, "usable_cores", lambda: cores)
        results = list(predict_dataset(RedModel(), dataset, CPU, batch_size=2, workers=workers, groups=groups,
                                       original_size=original_size))
        assert sorted(i for i, _ in results) == list(range(len(samples)))
        return dict(results)

    one = run(1)
    broken = next(i for i, s in enumerate(samples) if s.image.name == "broken.jpg")
    assert "broken.jpg" in one.pop(broken)
    for other in (run(3), run(1, workers=1)):
        assert "broken.jpg" in other.pop(broken)
        for i, result in one.items():
            if original_size:
                assert result.shape == read_image(samples[i].image).shape[:2]
                assert result.any() and not result.all()  # a real mask of the image's red channel
                assert (result == other[i]).all()
            else:
                assert torch.equal(result, other[i])


def test_read_batches_match_one_at_a_time_reading(tmp_path):
    from coseg.inference import ImageFileDataset, collate_images, read_batches
    from metric.threads import single_threaded_pool

    root = odd_sized_set(tmp_path / "data") / "images"
    paths = sorted(root.rglob("*.jpg")) * 3
    dataset = ImageFileDataset(paths, 32)
    batches = [[4, 0, 2], [1], [3, 5, 6, 7, 8]]
    with single_threaded_pool(3) as pool:
        read = list(read_batches(dataset, batches, pool))
    assert len(read) == len(batches)
    for batch, indices in zip(read, batches):
        serial = collate_images([dataset[i] for i in indices])
        assert batch["index"].tolist() == indices
        assert torch.equal(batch["image"], serial["image"]) and torch.equal(batch["size"], serial["size"])


@pytest.mark.parametrize("cut_size", [None, 96], ids=["model_size", "larger"])
@pytest.mark.parametrize("group_mode", [True, False], ids=["groups", "alone"])
def test_colour_cut_sees_each_group_or_each_image(tmp_path, group_mode, cut_size):
    """``predict_dataset(colour=...)`` cuts a group's masks with the group's shared colours (group mode) or each
    image with its own: the same masks as the colour cut called directly on the model's probabilities, on the
    dataset's cut images (their own size) where it has them."""
    from coseg.data import find_samples
    from coseg.inference import ImageFileDataset, group_batches, group_ids, predict_dataset
    from coseg.models import GroupColourCut

    samples = find_samples(odd_sized_set(tmp_path / "data") / "images", "folders").samples
    dataset = ImageFileDataset([s.image for s in samples], 64, cut_size=cut_size)
    groups = group_ids(samples)
    colour = GroupColourCut(iterations=1)
    got = dict(predict_dataset(RedModel(), dataset, CPU, batch_size=2, groups=groups if group_mode else None,
                               colour=colour))
    alone = {}
    for batch in group_batches(groups):
        images = torch.stack([dataset[i]["image"] for i in batch])
        probs = images[:, :1].float() / 255  # RedModel's prediction
        if cut_size is not None:
            images = torch.stack([dataset[i]["cut_image"] for i in batch])
        expected = colour(images, probs) if group_mode else None
        for j, i in enumerate(batch):
            alone[i] = colour(images[j:j + 1], probs[j:j + 1])[0, 0]
            assert got[i].shape == (cut_size or 64,) * 2
            assert torch.equal(got[i], expected[j, 0] if group_mode else alone[i])
    assert set(torch.cat([m.flatten() for m in got.values()]).unique().tolist()) == {0.0, 1.0}
    if group_mode:  # the group's colours changed some image's mask
        assert any(not torch.equal(got[i], alone[i]) for i in got)


def test_images_for_the_colour_cut_come_from_the_same_file_at_their_own_size(tmp_path):
    from coseg.data import read_image, resize_image
    from coseg.inference import collate_images, images_for
    from coseg.models import GroupColourCut

    paths = sorted((odd_sized_set(tmp_path / "data") / "images").rglob("*.jpg"))[:3]
    plain = images_for(paths, 32, None)
    assert "cut_image" not in plain[0] and "cut_image" not in collate_images([plain[0], plain[1]])
    both = images_for(paths, 32, GroupColourCut(scale=2))
    assert both.cut_size == 64
    for i, path in enumerate(paths):
        item = both[i]
        assert torch.equal(item["image"], plain[i]["image"])
        full = read_image(path)
        assert torch.equal(item["cut_image"], torch.from_numpy(resize_image(full, 64)).permute(2, 0, 1))
        assert item["size"].tolist() == list(full.shape[:2])
    batch = collate_images([both[0], {"index": 9, "error": "bad.jpg: broken"}, both[2]])
    assert batch["cut_image"].shape == (2, 3, 64, 64) and batch["image"].shape == (2, 3, 32, 32)
    assert torch.equal(batch["cut_image"][1], both[2]["cut_image"]) and batch["errors"] == [(9, "bad.jpg: broken")]


def test_images_that_would_write_one_mask_are_skipped_and_named(tmp_path):
    """``a.jpg`` and ``A.png`` would both write ``a.png`` (one file where case is ignored): neither overwrites the
    other's mask; both are listed, the other images are predicted."""
    from tests.coseg.files import write_rgb

    rng = np.random.default_rng(0)
    for name, size in (("a.jpg", (30, 50)), ("A.png", (40, 56)), ("b.jpg", (30, 50))):
        write_rgb(tmp_path / "in" / "g" / name, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    report = predict_folder(ConstantModel(0.8), 64, tmp_path / "in", tmp_path / "out", CPU, progress=False)
    assert report.written == 1 and [p.name for p in (tmp_path / "out" / "g").iterdir()] == ["b.png"]
    assert sorted(Path(f).name for f, _ in report.skipped) == ["A.png", "a.jpg"]
    assert all("A.png, a.jpg" in reason and "rename" in reason for _, reason in report.skipped)


def test_broken_link_is_reported(tmp_path):
    root = odd_sized_set(tmp_path / "data") / "images"
    (root / "g0" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    report = predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, progress=False)
    assert report.written == 3 and [f for f, _ in report.skipped] == [str(root / "g0" / "gone.jpg")]
    assert "broken link" in report.skipped[0][1]


def test_an_image_of_a_format_not_read_is_listed_as_skipped(tmp_path):
    root = odd_sized_set(tmp_path / "data") / "images"
    (root / "g0" / "IMG_0001.HEIC").write_bytes(b"not read")
    report = predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, progress=False)
    assert report.written == 3 and [f for f, _ in report.skipped] == [str(root / "g0" / "IMG_0001.HEIC")]
    assert "'.heic' files are not read here" in report.skipped[0][1]


def test_overlays_cannot_replace_the_masks(tmp_path):
    root = odd_sized_set(tmp_path / "data") / "images"
    with pytest.raises(ValueError, match="both the masks' and the overlays' folder"):
        predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, overlays=tmp_path / "out" / ".",
                       progress=False)
    assert not (tmp_path / "out").exists()


def test_rerun_with_overlays_writes_the_missing_overlays(tmp_path):
    root = odd_sized_set(tmp_path / "data") / "images"
    predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, progress=False)
    report = predict_folder(ConstantModel(0.8), 64, root, tmp_path / "out", CPU, overlays=tmp_path / "ov",
                            progress=False)
    assert report.written == 0 and report.already_done == 3
    assert sorted(p.relative_to(tmp_path / "ov") for p in (tmp_path / "ov").rglob("*.png")) == [
        Path("g0/im0.png"), Path("g0/im1.png"), Path("g1/im0.png")]


class GroupMeanModel(torch.nn.Module):
    """Foreground probability = the mean red of the image's group, everywhere: a mask depends on its group."""

    def predict_group(self, images: torch.Tensor, chunk_size: int = 16, refinement=None, flip: bool = False,
                      edges=None, statistics=None) -> torch.Tensor:
        return torch.full_like(images[:, :1], float(images[:, 0].mean()))


@pytest.mark.parametrize("lost", ["mask", "overlay"])
def test_resumed_group_is_predicted_whole(tmp_path, lost):
    """A group that lost one output to an interruption is predicted again with all its images, as the first run
    did: a dark image is foreground in its group (mean red 0.7) though not alone (0.4); only missing files are
    written."""
    from tests.coseg.files import write_rgb

    for name, red in (("dark.png", 100), ("bright.png", 255)):
        write_rgb(tmp_path / "in" / "g" / name, np.full((8, 8, 3), (red, 0, 0), np.uint8))
    out, ov = tmp_path / "out", tmp_path / "ov"
    first = predict_folder(GroupMeanModel(), 16, tmp_path / "in", out, CPU, overlays=ov, progress=False)
    assert first.written == 2 and cv2.imread(str(out / "g" / "dark.png"), cv2.IMREAD_UNCHANGED).min() == 255
    (out if lost == "mask" else ov).joinpath("g", "dark.png").unlink()
    bright = (out / "g" / "bright.png").stat().st_mtime_ns
    second = predict_folder(GroupMeanModel(), 16, tmp_path / "in", out, CPU, overlays=ov, progress=False)
    assert (second.written, second.already_done) == ((1, 1) if lost == "mask" else (0, 2))
    assert cv2.imread(str(out / "g" / "dark.png"), cv2.IMREAD_UNCHANGED).min() == 255
    overlay = read_image(ov / "g" / "dark.png")
    assert (overlay[..., 0] > overlay[..., 2]).all()  # tinted red: foreground
    assert (out / "g" / "bright.png").stat().st_mtime_ns == bright  # kept, not written again


def test_an_image_replaced_since_its_mask_was_written_is_predicted_again(tmp_path):
    # was: a rerun kept the mask of the image the file held before (same name), without a word
    import os

    from tests.coseg.files import write_rgb

    image, other = tmp_path / "in" / "g" / "a.png", tmp_path / "in" / "g" / "b.png"
    for path, red in ((image, 100), (other, 200)):  # the group's mean red 0.59: foreground
        write_rgb(path, np.full((8, 8, 3), (red, 0, 0), np.uint8))
    out, ov = tmp_path / "out", tmp_path / "ov"
    first = predict_folder(GroupMeanModel(), 16, tmp_path / "in", out, CPU, overlays=ov, progress=False)
    assert first.written == 2
    write_rgb(image, np.full((8, 8, 3), (0, 0, 0), np.uint8))  # replaced: the mean red falls to 0.39
    later = max(p.stat().st_mtime_ns for p in (out / "g" / "a.png", ov / "g" / "a.png")) + 10**9
    os.utime(image, ns=(later, later))  # newer than its mask and overlay, whatever the clock's resolution
    second = predict_folder(GroupMeanModel(), 16, tmp_path / "in", out, CPU, overlays=ov, progress=False)
    assert (second.written, second.already_done) == (2, 0)
    assert cv2.imread(str(out / "g" / "a.png"), cv2.IMREAD_UNCHANGED).max() == 0  # background now
    assert read_image(ov / "g" / "a.png").max() < 50  # the new (black) image's overlay, not the red one's
    # the group's other mask is the new group's too (was: kept as the former group made it)
    assert cv2.imread(str(out / "g" / "b.png"), cv2.IMREAD_UNCHANGED).max() == 0
    overlay = read_image(ov / "g" / "b.png")
    assert (overlay[..., 0] < 0.5 * 200 + 1).all()  # darkened, not tinted red


def test_an_image_added_to_a_group_rewrites_only_the_masks_it_changes(tmp_path):
    """A group's masks are those a fresh run writes after an image joins it; a kept mask whose content stays is
    left as it is (same file), and is counted as kept."""
    from tests.coseg.files import write_rgb

    for group, red in (("g", 100), ("h", 255)):  # g alone: mean red 0.39, background; h: foreground
        write_rgb(tmp_path / "in" / group / "a.png", np.full((8, 8, 3), (red, 0, 0), np.uint8))
    out = tmp_path / "out"
    assert predict_folder(GroupMeanModel(), 16, tmp_path / "in", out, CPU, progress=False).written == 2
    assert cv2.imread(str(out / "g" / "a.png"), cv2.IMREAD_UNCHANGED).max() == 0
    for group in ("g", "h"):  # the mean red: 0.69 in g (now foreground), 1.0 in h (unchanged)
        write_rgb(tmp_path / "in" / group / "b.png", np.full((8, 8, 3), (255, 0, 0), np.uint8))
    unchanged = (out / "h" / "a.png").stat()
    second = predict_folder(GroupMeanModel(), 16, tmp_path / "in", out, CPU, progress=False)
    assert (second.written, second.already_done) == (3, 1)
    for name in ("g/a.png", "g/b.png", "h/a.png", "h/b.png"):
        assert cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED).min() == 255, name
    after = (out / "h" / "a.png").stat()
    assert (after.st_ino, after.st_mtime_ns) == (unchanged.st_ino, unchanged.st_mtime_ns)


@pytest.mark.parametrize("recorded", [True, False])
def test_an_image_removed_from_a_group_rewrites_the_group_by_the_record(tmp_path, recorded):
    """With a model file (so a record), the group that lost an image is predicted again: its other mask is that of
    the smaller group (was: the larger group's kept); without a record nothing tells, and the mask is kept."""
    import json

    from tests.coseg.files import write_rgb

    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"stands for the model file")
    for group, name, red in (("g", "a.png", 100), ("g", "b.png", 255), ("h", "a.png", 255)):
        write_rgb(tmp_path / "in" / group / name, np.full((8, 8, 3), (red, 0, 0), np.uint8))
    out, ov = tmp_path / "out", tmp_path / "ov"
    options = dict(overlays=ov, progress=False, checkpoint=checkpoint if recorded else None)
    assert predict_folder(GroupMeanModel(), 16, tmp_path / "in", out, CPU, **options).written == 3
    assert cv2.imread(str(out / "g" / "a.png"), cv2.IMREAD_UNCHANGED).min() == 255  # mean red 0.69: foreground
    (tmp_path / "in" / "g" / "b.png").unlink()  # a alone: mean red 0.39, background
    kept = (out / "h" / "a.png").stat()
    second = predict_folder(GroupMeanModel(), 16, tmp_path / "in", out, CPU, **options)
    assert (second.written, second.already_done) == ((1, 1) if recorded else (0, 2))
    assert cv2.imread(str(out / "g" / "a.png"), cv2.IMREAD_UNCHANGED).max() == (0 if recorded else 255)
    assert (read_image(ov / "g" / "a.png")[..., 0] > 100).all() != recorded  # the overlay follows its mask (177 or 45)
    assert (out / "h" / "a.png").stat().st_mtime_ns == kept.st_mtime_ns  # the other group: not predicted again
    assert (out / "g" / "b.png").is_file()  # the removed image's mask is left where it is
    if recorded:
        record = json.loads((out / "predict.json").read_text())
        assert len(record["group_members"]) == 2 and "overwrite_unfinished" not in record
        third = predict_folder(GroupMeanModel(), 16, tmp_path / "in", out, CPU, **options)
        assert (third.written, third.already_done) == (0, 2)  # the record now holds the smaller group


def test_images_whose_masks_clash_still_count_in_their_group(tmp_path):
    """``a.jpg`` and ``A.png`` get no mask, but stay in their group: ``b.png`` (dark: background alone, mean red 0.4)
    is foreground with them (mean red 0.8), as when they are named apart; nothing is counted as already done."""
    from tests.coseg.files import write_rgb

    masks = []
    for names in (("a.jpg", "A.png"), ("a.jpg", "c.png")):
        for name, red in ((names[0], 255), (names[1], 255), ("b.png", 100)):
            write_rgb(tmp_path / "-".join(names) / "g" / name, np.full((8, 8, 3), (red, 0, 0), np.uint8))
        out = tmp_path / f"out-{'-'.join(names)}"
        report = predict_folder(GroupMeanModel(), 16, tmp_path / "-".join(names), out, CPU, progress=False)
        assert report.already_done == 0 and report.written == (1 if names[1] == "A.png" else 3)
        masks.append(cv2.imread(str(out / "g" / "b.png"), cv2.IMREAD_UNCHANGED))
    assert masks[0].min() == masks[1].min() == 255


def test_folders_beside_the_images_folder_are_listed(tmp_path):
    """``photos/images/`` makes the folders layout read only it: ``photos/cats/`` and ``photos/d.jpg`` are not
    predicted, and are named."""
    from tests.coseg.files import write_rgb

    image = np.zeros((8, 8, 3), np.uint8)
    for path in ("images/g/a.jpg", "images/g/b.jpg", "cats/c.jpg", "d.jpg"):
        write_rgb(tmp_path / "photos" / path, image)
    report = predict_folder(ConstantModel(0.8), 16, tmp_path / "photos", tmp_path / "out", CPU, progress=False)
    assert report.written == 2 and not (tmp_path / "out" / "cats").exists()
    assert sorted((f, "outside" in reason and "images/" in reason) for f, reason in report.skipped) == [
        (str(tmp_path / "photos" / "cats"), True), (str(tmp_path / "photos" / "d.jpg"), True)]
