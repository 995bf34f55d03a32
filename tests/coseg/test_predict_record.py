"""``predict`` into a folder that already holds masks: it resumes only when the masks were made the same way
(OUTPUT/predict.json records the input, the model file and the options that change the masks)."""
import json

import pytest
import torch
from click.testing import CliRunner

from apps.cli import main
from coseg.models import EdgeFilter, GroupColourCut, GroupRefinement, GroupStatistics, create_model
from coseg.predict import predict_folder
from tests.coseg.pipeline_fixtures import ConstantModel, odd_sized_set, synthetic_set

CPU = torch.device("cpu")


@pytest.fixture
def setup(tmp_path):
    root = odd_sized_set(tmp_path / "data") / "images"
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights one")
    return root, checkpoint, tmp_path / "out"


def run(root, checkpoint, out, **options):
    return predict_folder(ConstantModel(0.8), options.pop("image_size", 64), root, out, CPU, progress=False,
                          checkpoint=checkpoint, **options)


def interrupt_after(monkeypatch, masks: int) -> None:
    """Let ``masks`` mask writes through, then fail the next, as a run killed there."""
    import coseg.predict as predict

    real, count = predict.write_bytes_atomic, [0]

    def write(path, data):
        count[0] += 1
        if count[0] > masks:
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(predict, "write_bytes_atomic", write)


@pytest.mark.parametrize("change, named", [
    (dict(image_size=96), "image_size 64 (now 96)"),
    (dict(flip=True), "flip false (now true)"),
    (dict(group_mode=False), "group_mode true (now false)"),
    (dict(edges=EdgeFilter(0.2)), "edges null (now"),
    (dict(colour=GroupColourCut()), "colour null (now"),
    (dict(refinement=GroupRefinement(2, 1.0)), "refinement null (now"),
    (dict(statistics=GroupStatistics(8)), "statistics null (now"),
])
def test_a_rerun_with_other_settings_is_refused_naming_what_differs(setup, monkeypatch, change, named):
    """Even into the folder of an interrupted first run: its record was written before its first mask."""
    root, checkpoint, out = setup
    interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        run(root, checkpoint, out)
    monkeypatch.undo()
    kept = {p: p.read_bytes() for p in out.rglob("*.png")}
    assert len(kept) == 1
    with pytest.raises(ValueError, match=r"predict\.json: the masks there were made with (.*; )?" + named.replace(
            "(", r"\(").replace(")", r"\)") + ".*--overwrite predicts them all again"):
        run(root, checkpoint, out, **change)
    assert {p: p.read_bytes() for p in out.rglob("*.png")} == kept
    resumed = run(root, checkpoint, out)  # the same settings resume
    assert (resumed.written, resumed.already_done) == (2, 1)


def test_another_model_file_or_input_is_refused_a_copy_of_the_model_is_not(setup, tmp_path):
    root, checkpoint, out = setup
    run(root, checkpoint, out)
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(checkpoint.read_bytes())
    assert run(root, copy, out).already_done == 3  # the record now names the copy
    other_model = tmp_path / "other.safetensors"
    other_model.write_bytes(b"weights two")
    with pytest.raises(ValueError, match=r"made with model file .*copy\.safetensors \(now .*other\.safetensors\) —"):
        run(root, other_model, out)
    copy.write_bytes(b"weights two")  # retrained in place
    with pytest.raises(ValueError, match=r"model file .*copy\.safetensors \(its contents changed since\) —"):
        run(root, copy, out)
    other = odd_sized_set(tmp_path / "other") / "images"
    with pytest.raises(ValueError, match=r"made with input folder .*data.images \(now .*other.images\) —"):
        run(other, checkpoint, out)


def test_overwrite_replaces_the_record_and_an_unfinished_one_blocks_resuming(setup, monkeypatch):
    root, checkpoint, out = setup
    run(root, checkpoint, out)
    interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        run(root, checkpoint, out, flip=True, overwrite=True)
    monkeypatch.undo()
    assert json.loads((out / "predict.json").read_text())["overwrite_unfinished"] is True
    # masks of both settings are in the folder now: neither settings may resume into it
    for flip in (True, False):
        with pytest.raises(ValueError, match="an --overwrite run into this folder with other settings did not finish"):
            run(root, checkpoint, out, flip=flip)
    assert run(root, checkpoint, out, flip=True, overwrite=True).written == 3
    record = json.loads((out / "predict.json").read_text())
    assert "overwrite_unfinished" not in record and record["settings"]["flip"] is True
    assert run(root, checkpoint, out, flip=True).already_done == 3


def test_folders_without_settings_recorded_resume_as_before(setup):
    """Masks from before records were kept, or a predict --report record of an earlier version (input and
    checkpoint only): kept, and the record written."""
    root, checkpoint, out = setup
    predict_folder(ConstantModel(0.8), 64, root, out, CPU, progress=False)  # no model file: nothing recorded
    assert not (out / "predict.json").exists()
    (out / "predict.json").write_text(json.dumps({"input": str(root), "checkpoint": str(checkpoint)}))
    assert run(root, checkpoint, out, flip=True).already_done == 3
    assert json.loads((out / "predict.json").read_text())["settings"]["flip"] is True


def test_an_unreadable_record_is_named(setup):
    root, checkpoint, out = setup
    run(root, checkpoint, out)
    (out / "predict.json").write_text("{ truncated")
    with pytest.raises(ValueError, match=r"predict\.json: cannot read it .*; --overwrite predicts every mask again"):
        run(root, checkpoint, out)
    assert run(root, checkpoint, out, overwrite=True).written == 3
    assert json.loads((out / "predict.json").read_text())["checkpoint_sha256"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_rerun_with_another_option_is_one_line_and_identical_rerun_resumes(tmp_path):
    data = synthetic_set(tmp_path / "data", groups=1, images=2, size=32)
    model = tmp_path / "model.safetensors"
    create_model("unet", weights=None, embedding_dim=8).save(model, metadata={"image_size": "32"})
    base = ["predict", "--checkpoint", model, "--input", data / "images", "--output", tmp_path / "out", "--device",
            "cpu", "--quiet", "--no-colour-cut"]
    r = invoke(*base)
    assert r.exit_code == 0 and "wrote 2 mask(s)" in r.output, r.output
    masks = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*.png")}
    r = invoke(*base, "--flip", "--image-size", 64)
    assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
    assert "image_size 32 (now 64); flip false (now true)" in r.output and "--overwrite" in r.output
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*.png")} == masks
    r = invoke(*base, "--image-size", 32)  # the checkpoint's own size: the same settings
    assert r.exit_code == 0 and "kept 2 already done" in r.output, r.output
    r = invoke(*base, "--flip", "--overwrite", "--report")
    assert r.exit_code == 0 and "wrote 2 mask(s)" in r.output, r.output
    record = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert record["settings"]["flip"] is True and record["input"] == str(data / "images")  # as the report reads it
    assert (tmp_path / "out" / "report.html").is_file()


@pytest.mark.parametrize("minutes", ["nan", "inf", "-nan"])
def test_demo_refuses_a_time_budget_that_is_not_finite_before_writing(tmp_path, minutes):
    r = invoke("demo", "--minutes", minutes, "--output", tmp_path / "demo", "--quiet")
    assert r.exit_code == 2 and "Invalid value for '--minutes'" in r.output and "not a finite number" in r.output
    assert not (tmp_path / "demo").exists()


def test_overlays_of_other_settings_are_refused_and_an_overwrite_replaces_them(setup, tmp_path):
    """The overlays folder keeps its own record (``overlays.json``, not predict.json, which would make it a
    prediction folder for the report): overlays of another model are not kept beside masks of this one."""
    root, checkpoint, out = setup
    overlays = tmp_path / "overlays"
    run(root, checkpoint, out, overlays=overlays)
    assert json.loads((overlays / "overlays.json").read_text())["settings"]["flip"] is False
    assert not (overlays / "predict.json").exists()
    kept = {p: p.read_bytes() for p in overlays.rglob("*.png")}
    assert len(kept) == 3
    with pytest.raises(ValueError, match=r"overlays\.json: the overlays there were made with flip false \(now true\)"):
        run(root, checkpoint, tmp_path / "new_masks", overlays=overlays, flip=True)
    assert not (tmp_path / "new_masks").exists()  # refused before anything was written
    assert {p: p.read_bytes() for p in overlays.rglob("*.png")} == kept
    assert run(root, checkpoint, out, overlays=overlays).already_done == 3  # the same settings resume
    run(root, checkpoint, tmp_path / "new_masks", overlays=overlays, flip=True, overwrite=True)
    record = json.loads((overlays / "overlays.json").read_text())
    assert record["settings"]["flip"] is True and "overwrite_unfinished" not in record


def test_an_interrupted_overwrite_of_the_overlays_blocks_resuming(setup, tmp_path, monkeypatch):
    root, checkpoint, out = setup
    overlays = tmp_path / "overlays"
    run(root, checkpoint, out, overlays=overlays)
    interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        run(root, checkpoint, tmp_path / "other", overlays=overlays, flip=True, overwrite=True)
    monkeypatch.undo()
    assert json.loads((overlays / "overlays.json").read_text())["overwrite_unfinished"] is True
    with pytest.raises(ValueError, match=r"overlays\.json: an --overwrite run .* some overlays may still be"):
        run(root, checkpoint, out, overlays=overlays)


def drop_max_fit_pixels(record_file):
    """``record_file`` as a version before the colour cut's ``max_fit_pixels`` wrote it (the fit never shrunk)."""
    record = json.loads(record_file.read_text())
    del record["settings"]["colour"]["max_fit_pixels"]
    record_file.write_text(json.dumps(record))


@pytest.mark.parametrize("group_mode, max_fit_pixels, same_masks", [
    (True, 4_000_000, True),  # 16 images of the cut's 96 px: never shrunk
    (True, 16 * 96 * 96 - 1, False),  # shrunk for a group of 16
    (False, 96 * 96, True),  # each image fitted alone: never shrunk
    (False, 96 * 96 - 1, False),
])
def test_a_record_without_max_fit_pixels_resumes_where_the_fit_is_never_shrunk(setup, tmp_path, group_mode,
                                                                                 max_fit_pixels, same_masks):
    """A record of the version before ``max_fit_pixels`` (the fit never shrunk) resumes, masks and overlays alike,
    where this run's setting would not shrink the fit either (the same masks), and is refused where it would."""
    root, checkpoint, out = setup
    overlays = tmp_path / "overlays"
    run(root, checkpoint, out, overlays=overlays, group_mode=group_mode, colour=GroupColourCut())
    for record_file in (out / "predict.json", overlays / "overlays.json"):
        drop_max_fit_pixels(record_file)
    colour = GroupColourCut(max_fit_pixels=max_fit_pixels)
    assert colour.size_for(64) == 96
    if same_masks:
        assert run(root, checkpoint, out, overlays=overlays, group_mode=group_mode, colour=colour).already_done == 3
        assert json.loads((out / "predict.json").read_text())["settings"]["colour"]["max_fit_pixels"] == max_fit_pixels
        return
    with pytest.raises(ValueError, match=r"predict\.json: the masks there were made with colour \{.*\} \(now \{.*"
                                         rf"\"max_fit_pixels\": {max_fit_pixels}.*--overwrite predicts them all again"):
        run(root, checkpoint, out, overlays=overlays, group_mode=group_mode, colour=colour)
    with pytest.raises(ValueError, match=r"overlays\.json: the overlays there were made with colour \{"):
        run(root, checkpoint, tmp_path / "new_masks", overlays=overlays, group_mode=group_mode, colour=colour)
